"""A self-contained HTML report of a scan: one file, images embedded as data URIs, inline CSS and JS, no network.

At the top: counts (files, flagged, real, errors, provenance verdicts). Then one row per file: thumbnail, score
and label, ELA map, class-activation overlay (Grad-CAM++ by default) of the fake class and the file's provenance
section (what it declares, who signed it, whether the signature holds); error rows too; sortable by score.

Rows are written to a temporary file as results arrive, so memory stays flat however long the scan; the summary
is assembled at the end. Heatmaps cost a forward and backward pass each, so only the first ``max_visuals``
files get them (a report is for human-sized scans; the note at the top says when the cap was reached).
Provenance is shown next to the score and never changes it.
"""
from __future__ import annotations

import base64
import html
import io
import logging
import os
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING

from PIL import Image

from fakescope._version import __version__
from fakescope.explain.cam import CAM_LABELS, DEFAULT_CAM, ExplainError, cam_heatmap
from fakescope.explain.overlay import overlay
from fakescope.explain.views import ela_view
from fakescope.forensics.io import MAX_PIXELS, ImageLoadError, load_image
from fakescope.forensics.provenance import Provenance, read_provenance
from fakescope.inference.output import thresholds_by_kind, thresholds_text
from fakescope.inference.paths import path_text
from fakescope.video.frames import is_video_file

if TYPE_CHECKING:
    from typing_extensions import Self

log = logging.getLogger(__name__)

THUMB_SIZE = 160
MAX_VISUALS = 500
ROWS_MARKER = "<!-- ROWS -->"


def data_uri(img: Image.Image, size: int = THUMB_SIZE, quality: int = 80) -> str:
    """``img`` shrunk to fit ``size`` x ``size`` as a base64 JPEG data URI."""
    small = img.convert("RGB")
    small.thumbnail((size, size), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    small.save(buf, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _img_tag(uri: str, alt: str) -> str:
    return f'<img class="v" src="{uri}" alt="{html.escape(alt)}">'


def _file_cell(path: str) -> str:
    p = Path(path_text(path))
    return f'<b>{html.escape(p.name)}</b><br><span class="dir">{html.escape(str(p.parent))}</span>'


def _na(text: str) -> str:
    return f'<span class="na">{html.escape(text)}</span>'


#: Verdicts counted at the top of the report, with their card captions.
VERDICT_CARDS = {"declared_ai": "declare AI generation", "declared_edit": "declare edits",
                 "credentials_invalid": "with invalid credentials", "camera_original_likely": "camera originals (likely)"}


def _provenance_items(p: Provenance) -> list[str]:
    items = []
    if p.generator:
        items.append(f"generator: {html.escape(p.generator)}")
    if p.digital_source_type:
        items.append(f"digital source type: {html.escape(p.digital_source_type)}")
    if p.c2pa is not None:
        signer = html.escape(p.signed_by or "unknown signer")
        state = "signature valid" if p.valid else "signature/manifest INVALID"
        items.append(f"C2PA: signed by {signer}, {state}" + (f" ({html.escape(p.c2pa.state)})" if p.c2pa.state else ""))
        if p.c2pa.ingredients:
            items.append(f"ingredients: {html.escape(', '.join(p.c2pa.ingredients))}")
    cam = p.camera
    if cam is not None and (cam.make or cam.model):
        items.append(f"camera: {html.escape(' '.join(v for v in (cam.make, cam.model) if v))}")
    if cam is not None and cam.jpeg_encoder:
        items.append(f"JPEG tables: {html.escape(cam.jpeg_encoder)}")
    items += [f'<span class="flag">{html.escape(e)}</span>' for e in p.errors]
    return items


def provenance_html(p: Provenance | None) -> str:
    """One file's provenance section: verdict, the one-line reason, the evidence (``None``: not read)."""
    if p is None:
        return _na("provenance not read")
    items = "".join(f"<li>{i}</li>" for i in _provenance_items(p))
    return (f'<div class="prov"><span class="verdict {p.verdict}">{p.verdict.replace("_", " ")}</span>'
            f'<div class="why">{html.escape(p.reason)}</div><ul class="meta">{items}</ul></div>')


@dataclass
class ReportCounts:
    files: int = 0
    fake: int = 0
    real: int = 0
    errors: int = 0
    without_visuals: int = 0
    verdicts: Counter = field(default_factory=Counter)

    def count(self, label: str | None, prov: Provenance | None) -> None:
        self.files += 1
        self.fake += label == "fake"
        self.real += label == "real"
        self.errors += label is None
        if prov is not None:
            self.verdicts[prov.verdict] += 1


class ReportWriter:
    """Streams scan results into a self-contained HTML report; use as a context manager or call :meth:`close`.

    ``detector``: the :class:`~fakescope.inference.Detector` that produced the scores (for the class-activation column).
    """

    def __init__(self, out: str | Path, detector, max_visuals: int = MAX_VISUALS,
                 title: str = "fakescope scan report", cam_method: str = DEFAULT_CAM, max_pixels: int = MAX_PIXELS):
        self.out = Path(out)
        self.max_pixels = max_pixels
        self.detector = detector
        #: the thresholds the rows were labelled at, by kind of file (images, videos), as the rows carry them
        self.thresholds: dict[str, float] = {}
        self.max_visuals = max_visuals
        self.title = title
        if cam_method not in CAM_LABELS:
            raise ValueError(f"unknown CAM method {cam_method!r}; choose from {', '.join(CAM_LABELS)}")
        self.cam_method = cam_method
        self.cam_label = CAM_LABELS[cam_method]
        self.counts = ReportCounts()
        self.cam_problem: str | None = None
        pre = getattr(detector, "preprocess", None)
        self.ela_quality = pre.ela_quality if pre is not None and "ela" in pre.input_mode else 90
        # Lives as long as the writer (closed by close()), so no with-block.
        self._rows = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self.close()
        else:
            self._rows.close()

    def _cam_cell(self, img: Image.Image) -> str:
        if self.cam_problem is not None:
            return _na("n/a")
        try:
            heat = cam_heatmap(self.detector, img, self.cam_method)
            return _img_tag(data_uri(overlay(img, heat)), CAM_LABELS[self.cam_method])
        except ExplainError as err:
            self.cam_problem = str(err)
            log.warning("no %s in the report: %s", self.cam_label, err)
            return _na("n/a")
        except (RuntimeError, ValueError) as err:
            log.warning("%s failed: %s", self.cam_label, err)
            return _na(f"failed: {err}")

    def _visual_cells(self, path: str) -> tuple[str, str, str]:
        """(thumbnail, ELA, CAM) cells; ELA and CAM only for the first ``max_visuals`` files."""
        try:
            img = load_image(path, self.max_pixels)
        except ImageLoadError as err:
            return _na(err.reason), _na("-"), _na("-")
        thumb = _img_tag(data_uri(img), Path(path_text(path)).name)
        if self.counts.files - self.counts.errors > self.max_visuals:
            self.counts.without_visuals += 1
            return thumb, _na("not rendered (cap)"), _na("not rendered (cap)")
        return thumb, _img_tag(data_uri(ela_view(img, self.ela_quality)), "ELA"), self._cam_cell(img)

    def _error_row(self, result, prov: Provenance | None) -> str:
        i = self.counts.files
        return (f'<tr class="error" data-index="{i}" data-score="-1" data-flagged="0" '
                f'data-name="{html.escape(path_text(result.path))}"><td class="num">{i}</td><td>{_na("-")}</td>'
                f'<td class="file">{_file_cell(result.path)}</td><td class="num">-</td>'
                f'<td><span class="label error">error</span></td>'
                f'<td colspan="2" class="errmsg">{html.escape(path_text(result.error))}</td><td>{provenance_html(prov)}</td></tr>\n')

    def _scored_row(self, result, prov: Provenance | None) -> str:
        i, p, label = self.counts.files, float(result.fake_probability), html.escape(str(result.label))
        if getattr(result, "frames", None):  # a video: its sampled frames with face boxes, no per-image maps
            from fakescope.video.render import video_cells

            thumb, ela, cam = video_cells(result, result.threshold, data_uri, self.max_pixels)
        else:
            thumb, ela, cam = self._visual_cells(result.path)
        return (f'<tr data-index="{i}" data-score="{p:.6f}" data-flagged="{int(result.label == "fake")}" '
                f'data-name="{html.escape(path_text(result.path))}"><td class="num">{i}</td><td>{thumb}</td>'
                f'<td class="file">{_file_cell(result.path)}</td>'
                f'<td class="num">{p:.3f}<div class="bar"><i style="width:{p * 100:.1f}%"></i></div>'
                f'{_familiarity_html(getattr(result, "familiarity", None))}'
                f'{_copy_move_html(getattr(result, "copy_move", None))}</td>'
                f'<td><span class="label {label}">{label}</span>{_label_reason_html(getattr(result, "label_reason", None))}</td>'
                f'<td>{ela}</td><td>{cam}</td><td>{provenance_html(prov)}</td></tr>\n')

    def add(self, result) -> None:
        """Append one :class:`~fakescope.inference.scan.ScanResult` (scored or failed)."""
        prov = self._provenance(result)
        self.counts.count(result.label if result.error is None else None, prov)
        for kind, t in thresholds_by_kind([result]).items():
            self.thresholds.setdefault(kind, t)
        self._rows.write(self._error_row(result, prov) if result.error is not None else self._scored_row(result, prov))

    @staticmethod
    def _provenance(result) -> Provenance | None:
        """The provenance the scan read with the pixels, else read here; none for videos, and, as in the scan's rows,
        for files with no bytes to read (not there, empty, unreadable, not regular files: their error says why)."""
        prov, path = getattr(result, "provenance", None), result.path
        if (prov is not None or is_video_file(path) or not os.path.isfile(path) or os.path.getsize(path) == 0
                or not os.access(path, os.R_OK)):
            return prov
        return read_provenance(path)

    def _notes(self) -> str:
        notes = [("Scores come from the detector alone. Provenance (Content Credentials, XMP, generator settings, "
                  "camera EXIF) is a separate signal about the file, listed for the analyst: it never changes a "
                  "score. Only a valid C2PA signature resists forging, and a file that declares nothing proves "
                  "nothing."),
                 (f"Flagged = fake probability &ge; {self._threshold_text()}. The ELA map shows JPEG re-compression "
                  f"differences (quality {self.ela_quality}); the {self.cam_label} overlay shows what pushes the "
                  "score towards fake (red = strongest).")]
        if self.counts.without_visuals:
            notes.append(f"ELA and {self.cam_label} maps are rendered for the first {self.max_visuals} readable "
                         f"files only; {self.counts.without_visuals} files have a thumbnail, score and provenance "
                         "but no maps.")
        if self.cam_problem:
            notes.append(f"No {self.cam_label} column for this detector: {html.escape(self.cam_problem)}.")
        return "\n".join(f"    <p>{n}</p>" for n in notes)

    def _threshold_text(self) -> str:
        return thresholds_text(self.thresholds) or "- (no file scored)"

    def _head_tail(self) -> tuple[str, str]:
        text = (resources.files("fakescope.evaluation") / "report_template.html").read_text(encoding="utf-8")
        c = self.counts
        filled = Template(text).substitute(
            title=html.escape(self.title), version=__version__, model=html.escape(str(self.detector.name)),
            threshold=self._threshold_text(), generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            n_files=c.files, n_fake=c.fake, n_real=c.real, n_errors=c.errors, notes=self._notes(),
            verdict_cards="\n".join(f'    <div class="card"><b>{c.verdicts[v]}</b><span>{caption}</span></div>'
                                     for v, caption in VERDICT_CARDS.items()),
            cam_name=html.escape(self.cam_label))
        head, tail = filled.split(ROWS_MARKER)
        return head, tail

    def close(self) -> Path:
        """Write the report (atomically: a temporary file renamed into place) and return its path."""
        if self._rows.closed:
            return self.out
        head, tail = self._head_tail()
        self.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.out.with_name(self.out.name + ".part")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(head)
            self._rows.seek(0)
            while chunk := self._rows.read(1 << 20):
                f.write(chunk)
            f.write(tail)
        self._rows.close()
        os.replace(tmp, self.out)
        return self.out


def write_report(results: Iterable, detector, out: str | Path, max_visuals: int = MAX_VISUALS,
                 on_row: Callable[[object], None] | None = None, max_pixels: int = MAX_PIXELS) -> Path:
    """Write the HTML report of ``results`` (scan results, in any order, each labelled at its row's ``threshold``)
    to ``out``; files are decoded again for their pictures under ``max_pixels`` (give the scan's)."""
    with ReportWriter(out, detector, max_visuals, max_pixels=max_pixels) as writer:
        for r in results:
            writer.add(r)
            if on_row:
                on_row(r)
    return writer.out


def _label_reason_html(reason: str | None) -> str:
    """Under the label, when something other than the score chose it (``--trust-credentials``): what did."""
    return "" if not reason else f'<div class="label-reason">{html.escape(reason)}</div>'


def _copy_move_html(pairs: int | None) -> str:
    """Under the score, when a copy pasted inside the image was found: how many keypoint pairs match."""
    from fakescope.forensics.copymove import MIN_PAIRS

    if pairs is None or pairs < MIN_PAIRS:
        return ""
    return f'<div class="copy-move">copy-move: {pairs} matched keypoint pairs</div>'


def _familiarity_html(familiarity: float | None) -> str:
    """The familiarity under the score: how much the image resembles the detector's training images."""
    if familiarity is None:
        return ""
    from fakescope.familiarity import FAMILIAR_CUT

    note = " unfamiliar" if familiarity < FAMILIAR_CUT else ""
    return f'<div class="familiarity{note}">familiarity {familiarity:.2f}{note}</div>'
