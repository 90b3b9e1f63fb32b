// fakescope web page, folder view: many files (chosen, or a dropped folder) scored through POST /v1/detect/batch
// (videos through POST /v1/detect/video), a sortable table with thumbnails; a row opens its views (an image: the
// views above, through app.js's detect(); a video: its per-frame plot); the results download as JSON or CSV written
// by the CLI's writer (POST /v1/results) and as the HTML report (POST /v1/report). Uses app.js's helpers.
"use strict";

const VIDEO_NAME = /\.(mp4|avi|mov|mkv|webm)$/i;
// the fields of a `fakescope scan` record; the API's web-only ones (width, height, explanation) are left out
const RECORD = ["fake_probability", "label", "threshold", "familiarity", "model", "error", "frames", "provenance", "label_reason", "copy_move"];
const SVG = "http://www.w3.org/2000/svg";
let rows = []; // { file, path, result: null | scan row, thumb: object URL | null }
let sort = { key: null, dir: 1 };
let modelName = "";

const isVideo = (f) => VIDEO_NAME.test(f.name) || (f.type || "").startsWith("video/");
const relPath = (f) => f.relPath || f.webkitRelativePath || f.name;
const thresholdQuery = () => (ownThreshold ? "?threshold=" + ownThreshold.value : "");

function entryFiles(entry) {
  // every file below a dropped file or folder entry, each knowing its path inside the drop
  if (entry.isFile) {
    return new Promise((resolve) => entry.file((f) => {
      f.relPath = entry.fullPath.replace(/^\//, "");
      resolve([f]);
    }, () => resolve([])));
  }
  const reader = entry.createReader();
  return new Promise((resolve) => {
    const found = [];
    const next = () => reader.readEntries(async (batch) => {
      if (!batch.length) return resolve(found);
      for (const e of batch) found.push(...(await entryFiles(e)));
      next();
    }, () => resolve(found));
    next();
  });
}

async function dropped(dataTransfer) {
  const entries = Array.from(dataTransfer.items || []).map((it) => it.webkitGetAsEntry && it.webkitGetAsEntry()).filter(Boolean);
  const files = entries.length ? (await Promise.all(entries.map(entryFiles))).flat() : Array.from(dataTransfer.files);
  if (files.length === 1 && !entries.some((e) => e.isDirectory) && !isVideo(files[0])) return detect(files[0]);
  return scanFolder(files);
}

function errorRow(path, message) {
  return { path: path, fake_probability: null, label: null, model: modelName, error: path + ": " + message };
}

function setResult(row, result) {
  if (result.model) modelName = result.model;
  const out = { path: row.path };
  RECORD.forEach((k) => result[k] !== undefined && result[k] !== null && (out[k] = result[k]));
  ["fake_probability", "label", "threshold", "model", "error"].forEach((k) => k in out || (out[k] = null));
  row.result = out;
}

async function scoreImages(images, progress) {
  const byFile = new Map(images.map((r) => [r.file, r]));
  for (const batch of chunks(images.map((r) => r.file))) {
    const form = new FormData();
    batch.forEach((f) => form.append("files", f, byFile.get(f).path));
    try {
      const body = await postJson("/v1/detect/batch" + thresholdQuery(), { body: form });
      body.results.forEach((res, k) => setResult(byFile.get(batch[k]), res));
    } catch (err) {
      const why = err.message.startsWith("413") ? "over the server's upload limit" : err.message;
      batch.forEach((f) => setResult(byFile.get(f), errorRow(byFile.get(f).path, why)));
    }
    progress(batch.length);
  }
}

async function scoreVideos(videos, progress) {
  for (const row of videos) {
    const form = new FormData();
    form.append("file", row.file, row.path);
    try {
      setResult(row, await postJson("/v1/detect/video" + thresholdQuery(), { body: form }));
    } catch (err) {
      setResult(row, errorRow(row.path, err.message));
    }
    progress(1);
  }
}

async function scanFolder(files) {
  files = files.filter((f) => !f.name.startsWith("."));
  if (!files.length) return;
  rows.forEach((r) => r.thumb && URL.revokeObjectURL(r.thumb));
  rows = files.map((file) => ({ file: file, path: relPath(file), result: null, thumb: null }));
  $("folder-view").hidden = false;
  $("video-view").hidden = true;
  document.body.dataset.folder = "busy";
  let done = 0;
  const progress = (n) => {
    done += n;
    $("folder-status").textContent = done < rows.length ? "scored " + done + " of " + rows.length + " files\u2026" : "";
    renderTable();
  };
  progress(0);
  await scoreImages(rows.filter((r) => !isVideo(r.file)), progress);
  await scoreVideos(rows.filter((r) => isVideo(r.file)), progress);
  const count = (label) => rows.filter((r) => r.result && r.result.label === label).length;
  const errors = rows.filter((r) => r.result && r.result.error).length;
  // as the CLI's summary: uncertain (unfamiliar, undecided) only when there are some
  const uncertain = count("uncertain") ? ", " + count("uncertain") + " uncertain" : "";
  $("folder-summary").textContent = rows.length + " files: " + count("fake") + " flagged fake, " + count("real") +
    " real" + uncertain + ", " + errors + (errors === 1 ? " error" : " errors") + " (model " + modelName + ")";
  document.body.dataset.folder = "done";
}

function compare(a, b) {
  const ra = a.result || {}, rb = b.result || {};
  if (sort.key === "path") return sort.dir * a.path.localeCompare(b.path);
  if (sort.key === "label") return sort.dir * String(ra.label || "~").localeCompare(String(rb.label || "~"));
  const pa = ra.fake_probability, pb = rb.fake_probability; // unscored and failed files last either way
  if (pa === null || pa === undefined) return pb === null || pb === undefined ? 0 : 1;
  if (pb === null || pb === undefined) return -1;
  return sort.dir * (pa - pb);
}

function cell(tr, className, content) {
  const td = document.createElement("td");
  if (className) td.className = className;
  if (content instanceof Node) td.appendChild(content); else td.textContent = content;
  tr.appendChild(td);
  return td;
}

function thumbnail(row) {
  if (isVideo(row.file)) {
    const div = document.createElement("div");
    div.className = "thumb";
    div.textContent = "video";
    return div;
  }
  row.thumb = row.thumb || URL.createObjectURL(row.file);
  const img = document.createElement("img");
  img.loading = "lazy";
  img.alt = "";
  img.src = row.thumb;
  img.onerror = () => img.replaceWith(Object.assign(document.createElement("div"), { className: "thumb", textContent: "no preview" }));
  return img;
}

function scoreCell(result) {
  const frag = document.createDocumentFragment();
  const p = result ? result.fake_probability : null;
  frag.append(p === null ? (result ? "-" : "\u2026") : p.toFixed(3));
  if (p !== null) {
    const bar = Object.assign(document.createElement("div"), { className: "bar" });
    const fill = document.createElement("i");
    fill.style.width = (p * 100).toFixed(1) + "%";
    bar.appendChild(fill);
    frag.appendChild(bar);
  }
  return frag;
}

function renderTable() {
  const body = $("folder-table").tBodies[0];
  const ordered = sort.key ? rows.slice().sort(compare) : rows;
  body.replaceChildren(...ordered.map((row) => {
    const tr = document.createElement("tr");
    const r = row.result;
    tr.dataset.path = row.path;
    cell(tr, "", thumbnail(row));
    cell(tr, "file", row.path);
    cell(tr, "num", scoreCell(r));
    const label = r ? (r.error ? "error" : r.label) : "";
    cell(tr, "", label ? Object.assign(document.createElement("span"), { className: "label " + label, textContent: label }) : "");
    cell(tr, "errmsg", r && r.error ? r.error : "");
    tr.addEventListener("click", () => openRow(row, tr));
    return tr;
  }));
}

function sortBy(th) {
  const key = th.dataset.sort;
  sort = { key: key, dir: sort.key === key ? -sort.dir : key === "score" ? -1 : 1 };
  document.querySelectorAll("#folder-table th[data-sort]").forEach((h) => h.setAttribute("aria-sort", "none"));
  th.setAttribute("aria-sort", sort.dir > 0 ? "ascending" : "descending");
  renderTable();
}

function openRow(row, tr) {
  const r = row.result;
  if (!r) return;
  document.querySelectorAll("#folder-table tr.open").forEach((t) => t.classList.remove("open"));
  tr.classList.add("open");
  $("video-view").hidden = true;
  if (r.error) return showError(r.error);
  if (r.frames) return showVideo(r);
  $("result").hidden = true;
  detect(row.file).then(() => $("result").scrollIntoView({ block: "nearest" }));
}

function svgEl(name, attrs) {
  const el = document.createElementNS(SVG, name);
  Object.entries(attrs).forEach(([k, v]) => el.setAttribute(k, v));
  return el;
}

function showVideo(r) {
  showError("");
  $("result").hidden = true;
  $("video-name").textContent = r.path;
  $("video-score").textContent = r.fake_probability.toFixed(3);
  $("video-label").textContent = r.label;
  $("video-frames").textContent = r.frames.length + " sampled, " + r.frames.filter((f) => f.face).length + " with a face";
  const plot = $("frame-plot"), w = 640, h = 200, pad = 30;
  const last = Math.max(...r.frames.map((f) => f.time), 1e-6);
  const x = (t) => pad + (w - 2 * pad) * (t / last), y = (p) => h - pad + (2 * pad - h) * p;
  const t = r.threshold;
  const items = [svgEl("line", { x1: pad, y1: y(0), x2: w - pad, y2: y(0), stroke: "#d9dee6" }),
    svgEl("line", { x1: pad, y1: y(t), x2: w - pad, y2: y(t), stroke: "#b3261e", "stroke-dasharray": "5 4", class: "threshold" }),
    svgEl("polyline", { points: r.frames.map((f) => x(f.time) + "," + y(f.score)).join(" "), fill: "none", stroke: "#2f5bd3" })];
  r.frames.forEach((f) => items.push(svgEl("circle", { cx: x(f.time), cy: y(f.score), r: 4, stroke: "#2f5bd3",
    fill: f.face ? "#2f5bd3" : "#fff", class: "frame" })));
  [[0, "0"], [1, "1"]].forEach(([p, s]) => items.push(Object.assign(svgEl("text", { x: 6, y: y(p) + 4 }), { textContent: s })));
  items.push(Object.assign(svgEl("text", { x: w - pad, y: h - 8, "text-anchor": "end" }), { textContent: last.toFixed(1) + " s" }));
  plot.replaceChildren(...items);
  $("video-view").hidden = false;
  $("video-view").scrollIntoView({ block: "nearest" });
}

function save(blob, name) {
  const a = Object.assign(document.createElement("a"), { href: URL.createObjectURL(blob), download: name });
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10000);
}

function scanRows() {
  return rows.filter((r) => r.result).map((r) => r.result);
}

async function downloadResults(format) {
  try {
    const res = await fetch("/v1/results?format=" + format, { method: "POST", body: JSON.stringify({ results: scanRows() }),
      headers: { ...headers(), "Content-Type": "application/json" } });
    if (!res.ok) throw new Error(reason(res, await res.json().catch(() => ({ detail: res.statusText }))));
    save(await res.blob(), "fakescope-results." + format);
  } catch (err) {
    $("folder-status").textContent = "could not write the results: " + err.message;
  }
}

async function downloadReport() {
  const files = rows.map((r) => r.file), bytes = files.reduce((n, f) => n + f.size, 0);
  if (files.length > limits.files || bytes > 0.95 * limits.bytes) {
    $("folder-status").textContent = "The HTML report is made in one request: this server takes at most " + limits.files +
      " files and " + (limits.bytes / 1048576).toFixed(0) + " MB. For a larger folder run: fakescope scan FOLDER --report report.html";
    return;
  }
  const form = new FormData();
  rows.forEach((r) => form.append("files", r.file, r.path));
  $("folder-status").textContent = "making the report\u2026";
  try {
    const res = await fetch("/v1/report" + thresholdQuery(), { method: "POST", body: form, headers: headers() });
    if (!res.ok) throw new Error(reason(res, await res.json().catch(() => ({ detail: res.statusText }))));
    save(await res.blob(), "fakescope-report.html");
    $("folder-status").textContent = "";
  } catch (err) {
    $("folder-status").textContent = "could not make the report: " + err.message;
  }
}

function setupFolder() {
  $("files").addEventListener("change", (e) => scanFolder(Array.from(e.target.files)));
  $("dir").addEventListener("change", (e) => scanFolder(Array.from(e.target.files)));
  document.querySelectorAll("#folder-table th[data-sort]").forEach((th) => th.addEventListener("click", () => sortBy(th)));
  $("dl-json").addEventListener("click", () => downloadResults("json"));
  $("dl-csv").addEventListener("click", () => downloadResults("csv"));
  $("dl-report").addEventListener("click", downloadReport);
}

document.addEventListener("DOMContentLoaded", setupFolder);
