"""Streaming scan: files and folders in, one result per file out.

Folders are listed lazily inside worker processes (:mod:`fakescope.inference.pool`), which decode and preprocess; inference runs in
batches, and results are yielded as they are ready, so memory stays bounded however many files are scanned
(a folder of a million files is never held as a list of paths or tensors). A file that cannot be read becomes
a result with an ``error`` and never stops the scan.

With ``provenance=True`` each image's :class:`~fakescope.forensics.provenance.Provenance` (Content Credentials,
XMP, generator settings, camera EXIF) is read in the same worker from the bytes the decoder reads, and travels
with the result; it never changes the score, and changes the label only under ``trust_credentials``.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Container, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from fakescope.familiarity import decide
from fakescope.forensics.io import MAX_PIXELS, MediaLoadError, irregular_file_reason, load_image, open_image
from fakescope.forensics.provenance import Provenance, read_provenance
from fakescope.inference.detector import Detector
from fakescope.inference.inputs import distinct_roots, walk_image_files
from fakescope.inference.paths import PATH_BYTES, path_fields, path_from_record, path_text
from fakescope.inference.pool import run_sharded
from fakescope.video.frames import is_video_file
from fakescope.video.scan import PreparedVideo, VideoOptions, prepare_video, score_video

log = logging.getLogger(__name__)


@dataclass
class ScanResult:
    """One scanned file. On error, ``fake_probability``, ``label`` and ``threshold`` are None and ``error`` says why.

    ``provenance`` is what the file declares, so an error row has it only when the file's bytes were read: a file
    whose pixels fail to decode (truncated, malformed, over the pixel limit) keeps what its bytes declare; a file
    with no bytes to read (missing, empty, unreadable, a folder, a pipe or device) has none.
    """

    path: str
    fake_probability: float | None
    label: str | None
    #: The probability at or above which this file's label is fake: the scan's ``threshold``, else the detector's
    #: decision threshold for how it scored the file. Keyword-only, so that it can sit right after ``label`` in the
    #: rows while ``ScanResult(path, p, label, model)`` keeps its meaning; None in a row from an older fakescope.
    threshold: float | None = field(default=None, kw_only=True)
    model: str
    error: str | None = None
    #: Videos only: one record per sampled frame (index, time in s, score, face flag, faces with box and score).
    frames: list[dict[str, Any]] | None = None
    #: What the file declares about its origin (None: not read, as with ``--no-provenance``, or a video).
    provenance: Provenance | None = None
    #: Set when something other than the score chose the label (``trust_credentials``), saying what.
    label_reason: str | None = None
    #: How much the image looks like the detector's training images, 0..1 (:mod:`fakescope.familiarity`); None
    #: for a detector without a description of its training features, and for errors and videos.
    familiarity: float | None = None
    #: Keypoint pairs that one transform maps onto each other, a copy pasted inside the image
    #: (:mod:`fakescope.forensics.copymove`), already counted in ``fake_probability``; None when the detector does
    #: not check for copy-moves (the shipped default does), and for errors and videos.
    copy_move: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The record every output writes: ``path`` as valid text, plus ``path_bytes`` when the file name is not
        UTF-8 (:mod:`fakescope.inference.paths`)."""
        d = asdict(self)
        for key in ("frames", "provenance", "label_reason", "copy_move"):
            if d[key] is None:
                del d[key]  # an image scanned without provenance keeps exactly the seven fields
        if self.error is not None:
            d["error"] = path_text(self.error)
        return {**path_fields(self.path), **{k: v for k, v in d.items() if k != "path"}}

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> ScanResult:
        """The result a :meth:`to_dict` record holds (one written before rows had ``threshold`` reads as None)."""
        fields = {k: v for k, v in record.items() if k != PATH_BYTES}
        return cls(**{**fields, "path": path_from_record(record)})


@dataclass
class Prepared:
    """A file after decoding and preprocessing (in a worker): the array, or the reason it failed."""

    index: int
    path: str
    array: Any
    error: str | None
    provenance: Provenance | None = None


def _prepare_image(path: str | Path, preparer: Any, transform: Callable | None, max_pixels: int) -> Any:
    img = load_image(path, max_pixels)
    return preparer.to_array(img if transform is None else transform(img))


def _prepare_with_provenance(path: str | Path, data: bytes, preparer: Any, transform: Callable | None,
                             max_pixels: int) -> tuple[Any, str | None, Provenance]:
    """(array or None, decoding error or None, provenance) from the file's bytes, decoded once: the provenance
    reader's thumbnail check reuses the decoded pixels, and a file whose pixels fail still gets its provenance."""
    try:
        img = open_image(data, max_pixels, name=str(path))
    except MediaLoadError as err:
        return None, err.reason, read_provenance(data, name=str(path))
    prov = read_provenance(data, name=str(path), decoded=img)
    return preparer.to_array(img if transform is None else transform(img)), None, prov


def _file_bytes(path: str | Path) -> bytes | None:
    """The file's bytes, read once for provenance and pixels; None when unreadable or empty (the decoder then
    opens the path itself and says why in its own words)."""
    try:
        return Path(path).read_bytes() or None
    except (OSError, ValueError):
        return None


def prepare_file(index: int, path: str | Path, preparer: Any, transform: Callable | None = None,
                 video: VideoOptions | None = None, provenance: bool = False, max_pixels: int = MAX_PIXELS) -> Prepared:
    """Decode ``path`` (an image over ``max_pixels``, or a video whose frames are too large for it, is an error),
    apply ``transform`` (e.g. a robustness perturbation) and ``preparer.to_array``; with ``provenance``, also
    read the image's provenance from the same bytes (kept when the pixels fail to decode).

    A video file (by extension) is sampled as ``video`` says (default :class:`VideoOptions`): its ``array`` is
    a :class:`~fakescope.video.scan.PreparedVideo` holding every frame's face crops, scored as one result. A pipe,
    socket or device is an error without being opened (:func:`~fakescope.forensics.io.irregular_file_reason`)."""
    irregular = irregular_file_reason(path)
    if irregular is not None:
        return Prepared(index, str(path), None, irregular)
    try:
        if is_video_file(path):
            return Prepared(index, str(path), prepare_video(path, preparer, video, transform, max_pixels), None)
        data = _file_bytes(path) if provenance else None
        if data is not None:
            return Prepared(index, str(path), *_prepare_with_provenance(path, data, preparer, transform, max_pixels))
        return Prepared(index, str(path), _prepare_image(path, preparer, transform, max_pixels), None)
    except MediaLoadError as err:
        return Prepared(index, str(path), None, err.reason)
    except Exception as err:  # noqa: BLE001  one odd file must not end a scan of millions
        return Prepared(index, str(path), None, f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")


class PathSet:
    """A compact, picklable set of path strings: sorted 64-bit hashes, 8 bytes per path (1M paths = 8 MB).

    Holds the finished files of a resumed scan; sent to every worker. A false "already done" needs two paths
    with the same 64-bit BLAKE2 hash (odds about n^2 / 2^65: 3e-8 for a million files).
    """

    def __init__(self, paths: Iterable[str] = ()):
        self._hashes = np.unique(np.fromiter((path_hash(p) for p in paths), dtype=np.uint64))

    @classmethod
    def from_jsonl(cls, path: str | Path) -> PathSet:
        """Paths recorded in a JSONL results file; a line torn by a crash is ignored (its file is redone)."""
        p = Path(path)
        return cls(_jsonl_paths(p)) if p.exists() else cls()

    def __contains__(self, path: object) -> bool:
        h = np.uint64(path_hash(str(path)))
        i = int(np.searchsorted(self._hashes, h))
        return i < len(self._hashes) and self._hashes[i] == h

    def __len__(self) -> int:
        return len(self._hashes)


def path_hash(path: str) -> int:
    """A stable 64-bit hash of a path string (BLAKE2b), the same on every process and node."""
    digest = hashlib.blake2b(path.encode("utf-8", "surrogateescape"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def _jsonl_paths(path: Path) -> Iterator[str]:
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            try:
                yield path_from_record(json.loads(line))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                continue


class _FileStream:
    """Each worker walks the input itself and prepares every k-th pending file, k = number of workers.

    Only the root paths travel to the workers; the listing is streamed in each, so nothing grows with the
    number of files.
    """

    def __init__(self, roots: list[Path], preparer: Any, transform: Callable | None = None,
                 skip: Container[str] | None = None, video: VideoOptions | None = None, provenance: bool = False,
                 max_pixels: int = MAX_PIXELS):
        self.roots = roots
        self.max_pixels = max_pixels
        self.video = video
        self.provenance = provenance
        self.preparer = preparer
        self.transform = transform
        self.skip = skip

    def shard(self, wid: int = 0, nw: int = 1) -> Iterator[Prepared]:
        pending = (p for p in walk_image_files(self.roots) if not self.skip or str(p) not in self.skip)
        for i, path in enumerate(pending):
            if i % nw == wid:
                yield prepare_file(i, path, self.preparer, self.transform, self.video, self.provenance, self.max_pixels)


#: Files a worker prepares per message to the main process (fewer, larger messages cost less).
CHUNK = 8


def iter_prepared(paths: Iterable[str | Path], preparer: Any, workers: int, transform: Callable | None = None,
                  skip: Container[str] | None = None, video: VideoOptions | None = None,
                  provenance: bool = False, max_pixels: int = MAX_PIXELS) -> Iterator[Prepared]:
    """Prepared files, decoded in ``workers`` processes (0: in this process); at most about
    ``workers x 4 x CHUNK`` files are in flight, whatever the input size. ``provenance``: read each image's
    provenance in the same worker, from the same bytes. ``max_pixels``: see :func:`prepare_file`."""
    yield from _prepared_roots(distinct_roots(paths), preparer, workers, transform, skip, video, provenance, max_pixels)


def prepared_batches(paths: Iterable[str | Path], preparer: Any, workers: int,
                     batch_size: int = 32) -> Iterator[list[Prepared]]:
    """The readable files of :func:`iter_prepared`, in lists of up to ``batch_size`` (unreadable ones are dropped)."""
    batch: list[Prepared] = []
    for item in iter_prepared(paths, preparer, workers):
        if item.error is None:
            batch.append(item)
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def _prepared_roots(roots: list[Path], preparer: Any, workers: int, transform: Callable | None,
                    skip: Container[str] | None, video: VideoOptions | None, provenance: bool,
                    max_pixels: int) -> Iterator[Prepared]:
    """:func:`iter_prepared` of ``roots`` already without repeats (:func:`distinct_roots`)."""
    stream = _FileStream(roots, preparer, transform, skip, video, provenance, max_pixels)
    if workers <= 0:
        yield from stream.shard()
        return
    yield from run_sharded(stream.shard, workers, chunk=CHUNK, prefetch=4)


def trusted_label(result: Any) -> Any:
    """``trust_credentials``: a valid C2PA manifest declaring AI generation sets the label to ``fake`` (the score
    stays the pixels' own), and ``label_reason`` says so. ``result``: a :class:`ScanResult`, or any result with
    ``label``, ``provenance`` and ``label_reason`` (the service's)."""
    prov = result.provenance
    if result.label is not None and prov is not None and prov.verdict == "declared_ai" and prov.source == "c2pa" \
            and prov.valid:
        result.label = "fake"
        result.label_reason = (f"trusted Content Credentials: {prov.reason} (the pixel score is unchanged; "
                               "label set by trust_credentials)")
    return result


def score_prepared(
    items: Iterable[Prepared],
    detector: Detector,
    batch_size: int = 32,
    threshold: float | None = None,
    trust_credentials: bool = False,
    copy_move: bool = True,
) -> Iterator[tuple[Prepared, ScanResult]]:
    """Batch prepared arrays through the detector; errors pass straight through. ``trust_credentials``: see
    :func:`trusted_label`; ``copy_move``: see :meth:`~fakescope.inference.detector.Detector.score_batch`."""
    batch: list[Prepared] = []

    def done(item: Prepared, result: ScanResult) -> tuple[Prepared, ScanResult]:
        result.provenance = item.provenance
        return item, trusted_label(result) if trust_credentials else result

    def flush() -> Iterator[tuple[Prepared, ScanResult]]:
        scores = detector.score_batch([b.array for b in batch], copy_move)
        cut = detector.decision_threshold(copy_move) if threshold is None else threshold
        for i, (item, p) in enumerate(zip(batch, scores.probabilities)):
            f = None if scores.familiarity is None else round(float(scores.familiarity[i]), 4)
            pairs = None if scores.copy_move is None else int(scores.copy_move[i])
            yield done(item, ScanResult(item.path, float(p), decide(float(p), f, cut), detector.name, threshold=cut,
                                        familiarity=f, copy_move=pairs))
        batch.clear()

    for item in items:
        if item.error is not None:
            yield done(item, ScanResult(item.path, None, None, detector.name, item.error))
            continue
        if isinstance(item.array, PreparedVideo):  # a whole video: its frames are batched on their own
            p, frames = score_video(item.array, detector, batch_size)  # frames are never checked for copy-moves
            cut = detector.decision_threshold(copy_move=False) if threshold is None else threshold
            yield done(item, ScanResult(item.path, p, detector.label(p, cut), detector.name, threshold=cut,
                                        frames=frames))
            continue
        batch.append(item)
        if len(batch) >= batch_size:
            yield from flush()
    if batch:
        yield from flush()


def auto_workers(n_files: int | None) -> int:
    """Worker processes for decoding: none for a handful of files (start-up costs more than it saves)."""
    if n_files is not None and n_files < 16:
        return 0
    return max(1, min(4, (os.cpu_count() or 1)))


def scan(
    paths: Iterable[str | Path],
    detector: Detector,
    batch_size: int = 32,
    workers: int | None = None,
    threshold: float | None = None,
    skip: Container[str] | None = None,
    on_result: Callable[[ScanResult], None] | None = None,
    transform: Callable | None = None,
    video: VideoOptions | None = None,
    provenance: bool = False,
    trust_credentials: bool = False,
    max_pixels: int = MAX_PIXELS,
    copy_move: bool = True,
) -> Iterator[ScanResult]:
    """Score every image below ``paths``; yields one :class:`ScanResult` per file, in completion order.

    Folders are listed lazily inside the workers and at most a few batches are in flight, so memory stays flat
    for any number of files. ``skip``: paths (as strings) already scored, e.g. a :class:`PathSet` read from
    an interrupted run's JSONL. ``transform``: a picklable image -> image function applied after decoding.
    Video files give one result each, with ``frames``; ``video`` sets their sampling (default
    :class:`~fakescope.video.scan.VideoOptions`: 32 frames, faces, mean of the top 5 frame scores).
    ``provenance``: each image result carries its :class:`~fakescope.forensics.provenance.Provenance`;
    ``trust_credentials`` (needs it): see :func:`trusted_label`. ``max_pixels``: an image over it is an error
    result, not decoded (a video: frames over a fifth of it, see :data:`~fakescope.video.frames.FRAME_COST`).
    ``copy_move=False``: the detector's scores without its copy-move check, if it makes one (faster).
    """
    roots = distinct_roots(paths)
    if workers is None:
        workers = auto_workers(sum(1 for _ in islice(walk_image_files(roots), 16)))
    prepared = _prepared_roots(roots, detector.preparer, workers, transform, skip, video,
                               provenance or trust_credentials, max_pixels)
    with detector.alongside_workers(workers):
        for _, result in score_prepared(prepared, detector, batch_size, threshold, trust_credentials, copy_move):
            if on_result:
                on_result(result)
            yield result
