"""A self-contained HTML report of a scan: one file, images embedded as data URIs, inline CSS and JS, no network.

At the top: counts (files, flagged, real, errors, metadata findings). Then one row per file: thumbnail, score
and label, ELA map, class-activation overlay (Grad-CAM++ by default) of the fake class and metadata findings; error rows too; sortable by score.

Rows are written to a temporary file as results arrive, so memory stays flat however long the scan; the summary
is assembled at the end. Heatmaps cost a forward and backward pass each, so only the first ``max_visuals``
files get them (a report is for human-sized scans; the note at the top says when the cap was reached).
Metadata findings are shown next to the score and never change it.
"""
from __future__ import annotations

import base64
import html
import io
import logging
import os
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING

from PIL import Image

from fakescope import __version__
from fakescope.explain.cam import CAM_LABELS, DEFAULT_CAM, ExplainError, cam_heatmap
from fakescope.explain.overlay import overlay
from fakescope.explain.views import ela_view
from fakescope.forensics.io import ImageLoadError, load_image
from fakescope.forensics.metadata import MetadataFindings, read_metadata
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
    p = Path(path)
    return f'<b>{html.escape(p.name)}</b><br><span class="dir">{html.escape(str(p.parent))}</span>'


def _na(text: str) -> str:
    return f'<span class="na">{html.escape(text)}</span>'


def metadata_html(m: MetadataFindings | None) -> str:
    """The metadata findings of one file as a short list (``None``: a video, whose container is not read)."""
    if m is None:
        return _na("video: container metadata not read")
    if m.error:
        return _na(f"metadata unreadable: {m.error}")
    camera = " ".join(v for v in (m.camera_make, m.camera_model) if v)
    c2pa = {True: "present", False: "none", None: "not checked"}[m.c2pa_manifest]
    items = [f"EXIF: {'yes' if m.exif_present else 'no'}"]
    if camera:
        items.append(f"camera: {html.escape(camera)}")
    if m.software:
        items.append(f'<span class="flag">software: {html.escape(m.software)}</span>')
    detail = f" ({html.escape(m.c2pa_detail)})" if m.c2pa_detail else ""
    items.append(f'<span title="{html.escape(m.c2pa_method)}">C2PA manifest: {c2pa}{detail}</span>')
    return '<ul class="meta">' + "".join(f"<li>{i}</li>" for i in items) + "</ul>"


@dataclass
class ReportCounts:
    files: int = 0
    fake: int = 0
    real: int = 0
    errors: int = 0
    exif: int = 0
    software: int = 0
    c2pa: int = 0
    without_visuals: int = 0

    def count(self, label: str | None, meta: MetadataFindings | None) -> None:
        self.files += 1
        self.fake += label == "fake"
        self.real += label == "real"
        self.errors += label is None
        if meta is not None:
            self.exif += meta.exif_present
            self.software += meta.software is not None
            self.c2pa += bool(meta.c2pa_manifest)


class ReportWriter:
    """Streams scan results into a self-contained HTML report; use as a context manager or call :meth:`close`.

    ``detector``: the :class:`~fakescope.inference.Detector` that produced the scores (for the class-activation column).
    """

    def __init__(self, out: str | Path, detector, threshold: float | None = None, max_visuals: int = MAX_VISUALS,
                 title: str = "fakescope scan report", cam_method: str = DEFAULT_CAM):
        self.out = Path(out)
        self.detector = detector
        self.threshold = detector.threshold if threshold is None else threshold
        self.max_visuals = max_visuals
        self.title = title
        if cam_method not in CAM_LABELS:
            raise ValueError(f"unknown CAM method {cam_method!r}; choose from {', '.join(CAM_LABELS)}")
        self.cam_method = cam_method
        self.cam_label = CAM_LABELS[cam_method]
        self.counts = ReportCounts()
        self.c2pa_methods: set[str] = set()
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
            img = load_image(path)
        except ImageLoadError as err:
            return _na(err.reason), _na("-"), _na("-")
        thumb = _img_tag(data_uri(img), Path(path).name)
        if self.counts.files - self.counts.errors > self.max_visuals:
            self.counts.without_visuals += 1
            return thumb, _na("not rendered (cap)"), _na("not rendered (cap)")
        return thumb, _img_tag(data_uri(ela_view(img, self.ela_quality)), "ELA"), self._cam_cell(img)

    def _error_row(self, result) -> str:
        i = self.counts.files
        return (f'<tr class="error" data-index="{i}" data-score="-1" data-flagged="0" '
                f'data-name="{html.escape(result.path)}"><td class="num">{i}</td><td>{_na("-")}</td>'
                f'<td class="file">{_file_cell(result.path)}</td><td class="num">-</td>'
                f'<td><span class="label error">error</span></td>'
                f'<td colspan="3" class="errmsg">{html.escape(result.error)}</td></tr>\n')

    def _scored_row(self, result, meta: MetadataFindings | None) -> str:
        i, p, label = self.counts.files, float(result.fake_probability), html.escape(str(result.label))
        if getattr(result, "frames", None):  # a video: its sampled frames with face boxes, no per-image maps
            from fakescope.video.render import video_cells

            thumb, ela, cam = video_cells(result, self.threshold, data_uri)
        else:
            thumb, ela, cam = self._visual_cells(result.path)
        return (f'<tr data-index="{i}" data-score="{p:.6f}" data-flagged="{int(result.label == "fake")}" '
                f'data-name="{html.escape(result.path)}"><td class="num">{i}</td><td>{thumb}</td>'
                f'<td class="file">{_file_cell(result.path)}</td>'
                f'<td class="num">{p:.3f}<div class="bar"><i style="width:{p * 100:.1f}%"></i></div></td>'
                f'<td><span class="label {label}">{label}</span></td>'
                f'<td>{ela}</td><td>{cam}</td><td>{metadata_html(meta)}</td></tr>\n')

    def add(self, result) -> None:
        """Append one :class:`~fakescope.inference.scan.ScanResult` (scored or failed)."""
        if result.error is not None:
            self.counts.count(None, None)
            self._rows.write(self._error_row(result))
            return
        meta = None if is_video_file(result.path) else read_metadata(result.path)
        if meta is not None:
            self.c2pa_methods.add(meta.c2pa_method)
        self.counts.count(result.label, meta)
        self._rows.write(self._scored_row(result, meta))

    def _notes(self) -> str:
        notes = [("Scores come from the detector alone. Metadata findings are a separate signal, listed for the "
                  "analyst: they never change a score, and metadata is easy to strip or forge."),
                 (f"Flagged = fake probability &ge; {self.threshold:.3f}. The ELA map shows JPEG re-compression "
                  f"differences (quality {self.ela_quality}); the {self.cam_label} overlay shows what pushes the "
                  "score towards fake (red = strongest).")]
        methods = ", ".join(sorted(self.c2pa_methods)) or "-"
        notes.append(f"C2PA check: {html.escape(methods)}.")
        if self.counts.without_visuals:
            notes.append(f"ELA and {self.cam_label} maps are rendered for the first {self.max_visuals} readable "
                         f"files only; {self.counts.without_visuals} files have a thumbnail, score and metadata "
                         "but no maps.")
        if self.cam_problem:
            notes.append(f"No {self.cam_label} column for this detector: {html.escape(self.cam_problem)}.")
        return "\n".join(f"    <p>{n}</p>" for n in notes)

    def _head_tail(self) -> tuple[str, str]:
        text = (resources.files("fakescope.evaluation") / "report_template.html").read_text(encoding="utf-8")
        c = self.counts
        filled = Template(text).substitute(
            title=html.escape(self.title), version=__version__, model=html.escape(str(self.detector.name)),
            threshold=f"{self.threshold:.3f}", generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            n_files=c.files, n_fake=c.fake, n_real=c.real, n_errors=c.errors, n_exif=c.exif,
            n_software=c.software, n_c2pa=c.c2pa, notes=self._notes(), cam_name=html.escape(self.cam_label))
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


def write_report(results: Iterable, detector, out: str | Path, threshold: float | None = None,
                 max_visuals: int = MAX_VISUALS, on_row: Callable[[object], None] | None = None) -> Path:
    """Write the HTML report of ``results`` (scan results, in any order) to ``out``."""
    with ReportWriter(out, detector, threshold, max_visuals) as writer:
        for r in results:
            writer.add(r)
            if on_row:
                on_row(r)
    return writer.out
