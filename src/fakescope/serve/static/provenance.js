// The provenance panel: what the uploaded file declares about its origin (the `provenance` object of
// POST /v1/detect), shown above the pixel score and kept apart from it. Every value is set as text, never as HTML:
// it comes from the file.
"use strict";

const VERDICT_TEXT = {
  declared_ai: "declares AI generation",
  declared_edit: "declares edits",
  camera_original_likely: "looks like a camera original",
  credentials_invalid: "Content Credentials fail validation",
  none: "declares nothing",
};

function provenanceRow(list, name, value) {
  if (value === null || value === undefined || value === "") return;
  const dt = document.createElement("dt");
  dt.textContent = name;
  const dd = document.createElement("dd");
  dd.textContent = value;
  dd.dataset.field = name;
  list.append(dt, dd);
}

function signatureText(p) {
  if (!p.c2pa) return "no Content Credentials (unsigned)";
  if (p.valid) return "valid: the manifest and pixels are as signed" +
    (p.c2pa.state === "Trusted" ? " (signer on a trust list)" : " (signer not on a trust list)");
  return "INVALID: " + (p.c2pa.error || p.c2pa.failures.filter((c) => c !== "signingCredential.untrusted").join(", "));
}

function renderProvenance(p, labelReason) {
  const panel = document.getElementById("provenance");
  panel.hidden = !p;
  if (!p) return;
  const verdict = document.getElementById("prov-verdict");
  verdict.textContent = VERDICT_TEXT[p.verdict] || p.verdict;
  verdict.className = "prov-verdict " + p.verdict;
  panel.dataset.verdict = p.verdict;
  document.getElementById("prov-reason").textContent = p.reason;
  const list = document.getElementById("prov-details");
  list.replaceChildren();
  provenanceRow(list, "generator", p.generator);
  provenanceRow(list, "digital source type", p.digital_source_type);
  provenanceRow(list, "signed by", p.signed_by || (p.c2pa ? "unknown signer" : null));
  provenanceRow(list, "signature", signatureText(p));
  if (p.c2pa && p.c2pa.signed_at) provenanceRow(list, "signed at", p.c2pa.signed_at);
  if (p.c2pa && p.c2pa.actions.length) provenanceRow(list, "actions", p.c2pa.actions.map((a) => a.action).join(", "));
  if (p.c2pa && p.c2pa.ingredients.length) provenanceRow(list, "made from", p.c2pa.ingredients.join(", "));
  const cam = p.camera || {};
  provenanceRow(list, "camera", [cam.make, cam.model].filter(Boolean).join(" "));
  provenanceRow(list, "JPEG encoder", cam.jpeg_encoder);
  provenanceRow(list, "source", p.source);
  provenanceRow(list, "could not read", (p.errors || []).join("; "));
  const note = document.getElementById("prov-label-reason");
  note.textContent = labelReason || "";
  note.hidden = !labelReason;
}
