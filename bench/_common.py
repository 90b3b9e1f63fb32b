"""Shared helpers of the benchmark scripts: where the data is, the validation splits, writing docs sections."""
from __future__ import annotations

import functools
import os
import re
from pathlib import Path

from fakescope.data.discovery import Sample, discover_samples
from fakescope.data.splits import stratified_split

REPO = Path(__file__).resolve().parents[1]
SETS = ("casia1", "faces140k", "diffusiondb", "wildfaces", "cameras")


def data_root() -> Path:
    """The shared data folder, absolute (run configs record it, and held_out_sets compares them)."""
    return Path(os.environ.get("FAKESCOPE_DATA", REPO.parent / "shared" / "data")).resolve()


def val_split(name: str, seed: int = 0, val_fraction: float = 0.2) -> list[Sample]:
    """The validation split ``fakescope train`` uses for this set (seed 0, 20%, scene-group aware); the folder is
    walked once per process, however many models and perturbations a bench scores on it."""
    return train_val_split(name, seed, val_fraction)[1]


def train_val_split(name: str, seed: int = 0, val_fraction: float = 0.2) -> tuple[list[Sample], list[Sample]]:
    """(training split, validation split) as ``fakescope train`` makes them, from the same cached walk."""
    train, val = _split(str(data_root() / name), seed, val_fraction)
    return list(train), list(val)


@functools.cache
def _split(folder: str, seed: int, val_fraction: float) -> tuple[tuple[Sample, ...], tuple[Sample, ...]]:
    train, val = stratified_split(discover_samples(folder), val_fraction, seed)
    return tuple(train), tuple(val)


#: Which page of docs/benchmarks/ holds each ``## heading`` a bench writes (docs/benchmarks/index.md lists the pages).
PAGES = {
    "Default detector": "default-detector.md",
    "Camera originals, processed as the web processes them": "default-detector.md",  # by hand: fakescope robustness
    "Test-time averaging": "default-detector.md",
    "Mask head as a detector": "default-detector.md",
    "Candidates on the left-out table": "held-out.md",  # written by hand from the runs of the rows' commands
    "Held-out sets": "held-out.md",
    "Leave one source out": "held-out.md",
    "Real-only zero-shot scoring": "held-out.md",
    "Training-free: stability under noise": "held-out.md",
    "Familiarity": "held-out.md",
    "Nearest training images as a fake score": "held-out.md",
    "Copy-move evidence": "held-out.md",
    "Shortcut baselines": "shortcuts.md",
    "Detector zoo at one budget (bench/accuracy.py)": "zoo.md",
    "Cross-set transfer (bench/accuracy.py --cross)": "zoo.md",
    "Reading the zoo and cross-set tables": "zoo.md",
    "Localisation": "localisation.md",
    "Throughput": "speed.md",
    "Fast start and steady scanning": "speed.md",
    "Provenance reading": "speed.md",
    "Fast start: what the scan path does and what was tried": "speed.md",
    "Start-up and steady scanning: the second pass": "speed.md",
    "Allocator": "speed.md",
    "From-scratch CNN": "speed.md",
    "Compression": "compression.md",
    "Static int8 of the default": "compression.md",
    "REST service": "serve.md",
    "Video": "video.md",
    "Faces in video": "video.md",
    "Ensembles": "ensembles.md",
    "Generators": "generators.md",
    "Trace detectors": "traces.md",
    "Parallel training": "parallel.md",
}
DOCS = REPO / "docs" / "benchmarks"
WIDTH = 120
_LIST_ITEM = re.compile(r"([-*+>]|\d+[.)])\s")
#: What may not start a wrapped line: it would open a list, quote, heading or table inside the paragraph.
_BLOCK_START = re.compile(r"([-*+>#|]|1[.)])(\s|$)")


def page_of(heading: str) -> Path:
    """The docs/benchmarks/ page that holds the ``## heading`` section."""
    if heading not in PAGES:
        raise KeyError(f"no page for benchmark section {heading!r}: add it to PAGES in bench/_common.py")
    return DOCS / PAGES[heading]


def write_section(heading: str, body: str, path: Path | None = None) -> None:
    """Replace (or append) the ``## heading`` section of its docs/benchmarks/ page (``path`` overrides the page),
    leaving other sections alone; prose lines are wrapped at 120 characters."""
    path = path or page_of(heading)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = path.read_text() if path.exists() else f"# {heading}\n"
    block = f"## {heading}\n\n{wrap(body.strip())}\n"
    pattern = re.compile(rf"^## {re.escape(heading)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(lambda _: block + "\n", text) if pattern.search(text) else text.rstrip() + "\n\n" + block
    path.write_text(text)


def wrap(markdown: str, width: int = WIDTH) -> str:
    """Markdown with every prose line longer than ``width`` wrapped; tables, code and headings are left whole."""
    out, fenced = [], False
    for line in markdown.split("\n"):
        if line.startswith("```"):
            fenced = not fenced
        if fenced or len(line) <= width or line.startswith(("|", "#", "    ")):
            out.append(line)
        else:
            out.extend(_wrap_line(line, width))
    return "\n".join(out)


def _wrap_line(line: str, width: int) -> list[str]:
    """Greedy wrap of one prose line: a list item's continuation is indented under its text, and no new line starts
    with something Markdown would read as a list item, quote, heading or table row."""
    indent = line[: len(line) - len(line.lstrip())]
    words = line.split()
    marker = _LIST_ITEM.match(line.lstrip())
    hanging = indent + (" " * (len(words[0]) + 1) if marker else "")
    lines, current = [], indent + words[0]
    for word in words[1:]:
        if len(current) + 1 + len(word) > width and not _BLOCK_START.match(word + " "):
            lines.append(current)
            current = hanging + word
        else:
            current += " " + word
    return lines + [current]
