// fakescope web page: upload an image to POST /v1/detect?explain=true and show what the file declares (provenance.js),
// the score, ELA map and Grad-CAM++;
// optionally choose a threshold on the user's own real photos (POST /v1/detect/batch, then POST /v1/threshold).
"use strict";

const $ = (id) => document.getElementById(id);
const KEY_STORE = "fakescope-api-key";
const THRESHOLD_STORE = "fakescope-threshold";
let keyRequired = false;
let limits = { files: 32, bytes: 20 * 1024 * 1024 };
let ownThreshold = null; // { model, value } chosen on the user's reals, or null for the model's own
let chosen = null;

function headers() {
  const key = $("api-key").value.trim();
  return key ? { "X-API-Key": key } : {};
}

function setStatus(text, kind) {
  const el = $("status");
  el.textContent = text;
  el.className = "status " + kind;
}

async function pollReady() {
  try {
    const res = await fetch("/readyz", { cache: "no-store" });
    const body = await res.json();
    keyRequired = body.api_key_required;
    if (body.max_batch_files) limits = { files: body.max_batch_files, bytes: body.max_upload_mb * 1024 * 1024 };
    $("key-row").hidden = !keyRequired;
    if (body.ready) {
      setStatus("model " + body.model + " ready", "ready");
      if (ownThreshold && ownThreshold.model !== body.model) setOwnThreshold(null); // chosen for another model
      return;
    }
    if (body.error) {
      setStatus("model not available: " + body.error, "failed");
      return;
    }
    setStatus("loading the model\u2026", "waiting");
  } catch (err) {
    setStatus("server not reachable", "failed");
  }
  setTimeout(pollReady, 1500);
}

function showError(message) {
  const el = $("error");
  el.textContent = message;
  el.hidden = !message;
}

function png(b64) {
  return b64 ? "data:image/png;base64," + b64 : null;
}

function setImage(id, src) {
  const img = $(id);
  if (src) img.src = src; else img.removeAttribute("src");
}

function render(result, file) {
  const p = result.fake_probability;
  $("score").textContent = p.toFixed(4);
  $("label").textContent = result.label;
  $("label").className = "label " + result.label;
  $("filename").textContent = result.path;
  $("model").textContent = result.model;
  $("threshold").textContent = result.threshold.toFixed(2);
  const fam = result.familiarity;
  $("familiarity").textContent = fam == null ? "not described" : fam.toFixed(2) + (fam < 0.05 ? " (unfamiliar image)" : "");
  const pairs = result.copy_move;
  $("copy-move").textContent = pairs == null ? "not checked" : pairs >= 4 ? pairs + " matched pairs" : "none found";
  $("dims").textContent = result.width + "\u00d7" + result.height;
  $("meter-fill").style.left = (p * 100).toFixed(1) + "%";
  $("meter-mark").style.left = (result.threshold * 100).toFixed(1) + "%";
  const old = $("view-original").src;
  if (old.startsWith("blob:")) URL.revokeObjectURL(old);
  setImage("view-original", URL.createObjectURL(file));
  const ex = result.explanation || {};
  setImage("view-ela", png(ex.ela_png));
  setImage("view-cam", png(ex.gradcam_png));
  $("explain-note").textContent = ex.error || "";
  $("explain-note").hidden = !ex.error;
  renderProvenance(result.provenance, result.label_reason);
  $("result").hidden = false;
}

async function detect(file) {
  if (!file) return;
  showError("");
  $("drop").classList.add("busy");
  document.body.dataset.state = "busy";
  const form = new FormData();
  form.append("file", file, file.name);
  try {
    const query = "explain=true" + (ownThreshold ? "&threshold=" + ownThreshold.value : "");
    const res = await fetch("/v1/detect?" + query, { method: "POST", body: form, headers: headers() });
    const body = await res.json().catch(() => ({ detail: res.statusText }));
    if (!res.ok) {
      if (res.status === 401) $("key-row").hidden = false;
      showError(reason(res, body));
      document.body.dataset.state = "error";
      return;
    }
    render(body, file);
    document.body.dataset.state = "done";
  } catch (err) {
    showError("request failed: " + err.message);
    document.body.dataset.state = "error";
  } finally {
    $("drop").classList.remove("busy");
  }
}

function reason(res, body) {
  return res.status + ": " + (typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail));
}

async function postJson(url, init) {
  const res = await fetch(url, { method: "POST", ...init, headers: { ...headers(), ...(init.headers || {}) } });
  const body = await res.json().catch(() => ({ detail: res.statusText }));
  if (!res.ok) {
    if (res.status === 401) $("key-row").hidden = false;
    throw new Error(reason(res, body));
  }
  return body;
}

function chunks(files) {
  // as many files per batch request as the server allows, by count and by body size
  const out = [];
  let batch = [], bytes = 0;
  for (const f of files) {
    if (batch.length && (batch.length >= limits.files || bytes + f.size > 0.95 * limits.bytes)) {
      out.push(batch);
      batch = [];
      bytes = 0;
    }
    batch.push(f);
    bytes += f.size;
  }
  if (batch.length) out.push(batch);
  return out;
}

function setOwnThreshold(choice) {
  ownThreshold = choice;
  if (choice) sessionStorage.setItem(THRESHOLD_STORE, JSON.stringify(choice));
  else sessionStorage.removeItem(THRESHOLD_STORE);
  $("own-value").textContent = choice ? choice.value.toFixed(4) : "";
  $("own-threshold").hidden = !choice;
}

const percent = (x) => (100 * x).toFixed(1) + "%";

async function calibrate(files) {
  if (!files.length) return;
  const fpr = Number($("fpr").value) / 100;
  $("cal-result").hidden = true;
  document.body.dataset.calibrate = "busy";
  const probs = [], skipped = [];
  try {
    let done = 0;
    for (const batch of chunks(files)) {
      $("cal-status").textContent = "scoring " + done + " of " + files.length + " photos\u2026";
      const form = new FormData();
      batch.forEach((f) => form.append("files", f, f.name));
      try {
        const body = await postJson("/v1/detect/batch", { body: form });
        body.results.forEach((r) => (r.error ? skipped.push(r.error) : probs.push(r.fake_probability)));
      } catch (err) {
        if (!err.message.startsWith("413")) throw err;
        batch.forEach((f) => skipped.push(f.name + ": over the server's upload limit"));
      }
      done += batch.length;
    }
    if (!probs.length) throw new Error("none of the " + files.length + " files could be scored: " + skipped[0]);
    const out = await postJson("/v1/threshold", {
      body: JSON.stringify({ fake_probabilities: probs, fpr: fpr }),
      headers: { "Content-Type": "application/json" },
    });
    chosen = { model: out.model, value: out.threshold };
    const held = out.held_out_fpr === null ? "" : "; on other photos of this kind expect about " + percent(out.held_out_fpr);
    $("cal-summary").textContent = out.n + " real photos scored: the model's threshold " +
      out.model_threshold.toFixed(3) + " flags " + percent(out.flagged_at_model_threshold) + " of them. Threshold " +
      out.threshold.toFixed(4) + " flags " + percent(out.flagged_at_threshold) + held + ".";
    const notes = (out.warning ? [out.warning] : []).concat(skipped.length ? [skipped.length + " skipped: " + skipped.join("; ")] : []);
    $("cal-warning").textContent = notes.join(". ");
    $("cal-warning").hidden = !notes.length;
    $("cal-value").textContent = out.threshold.toFixed(4);
    $("cal-result").hidden = false;
    $("cal-status").textContent = "";
    document.body.dataset.calibrate = "done";
  } catch (err) {
    $("cal-status").textContent = "could not choose a threshold: " + err.message;
    document.body.dataset.calibrate = "error";
  }
}

function setup() {
  const drop = $("drop");
  const input = $("file");
  $("api-key").value = sessionStorage.getItem(KEY_STORE) || "";
  $("api-key").addEventListener("change", (e) => sessionStorage.setItem(KEY_STORE, e.target.value));
  input.addEventListener("change", () => detect(input.files[0]));
  ["dragenter", "dragover"].forEach((t) => drop.addEventListener(t, (e) => {
    e.preventDefault();
    drop.classList.add("over");
  }));
  ["dragleave", "drop"].forEach((t) => drop.addEventListener(t, (e) => {
    e.preventDefault();
    drop.classList.remove("over");
  }));
  drop.addEventListener("drop", (e) => dropped(e.dataTransfer)); // folder.js: one image, or a folder view
  const reals = $("reals");
  reals.addEventListener("change", () => calibrate(Array.from(reals.files)));
  $("cal-use").addEventListener("click", () => setOwnThreshold(chosen));
  $("own-reset").addEventListener("click", () => setOwnThreshold(null));
  try {
    setOwnThreshold(JSON.parse(sessionStorage.getItem(THRESHOLD_STORE)));
  } catch (err) {
    setOwnThreshold(null);
  }
  pollReady();
}

document.addEventListener("DOMContentLoaded", setup);
