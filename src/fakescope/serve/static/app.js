// fakescope web page: upload an image to POST /v1/detect?explain=true and show the score, ELA map and Grad-CAM++.
"use strict";

const $ = (id) => document.getElementById(id);
const KEY_STORE = "fakescope-api-key";
let keyRequired = false;

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
    $("key-row").hidden = !keyRequired;
    if (body.ready) {
      setStatus("model " + body.model + " ready", "ready");
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
    const res = await fetch("/v1/detect?explain=true", { method: "POST", body: form, headers: headers() });
    const body = await res.json().catch(() => ({ detail: res.statusText }));
    if (!res.ok) {
      if (res.status === 401) $("key-row").hidden = false;
      showError(res.status + ": " + (typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail)));
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
  drop.addEventListener("drop", (e) => detect(e.dataTransfer.files[0]));
  pollReady();
}

document.addEventListener("DOMContentLoaded", setup);
