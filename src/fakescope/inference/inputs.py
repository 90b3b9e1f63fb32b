"""Which files a scan reads: folders walked lazily for images and videos, files named on the command line always
tried, each file once (:func:`distinct_roots`), and whether a given path is among them (:func:`scan_reads`, which
keeps ``--output`` from overwriting an input)."""
from __future__ import annotations

import os
from collections.abc import Container, Iterable, Iterator
from pathlib import Path

from fakescope.data.discovery import is_image_name, is_mask_folder, walk
from fakescope.video.frames import is_video_file


def distinct_roots(paths: Iterable[str | Path]) -> list[Path]:
    """Input paths without repeats and without those a given folder's walk already reaches.

    Scanning ``photos/`` and ``photos/a.jpg`` together must score ``a.jpg`` once, or a resumed scan could not
    tell a finished file from a pending one. A named path the walk would pass over (``photos/notes.txt``, a
    missing file, a hidden one) is kept: a file named on the command line is always tried.
    """
    roots = [Path(p) for p in paths]
    dirs = {os.path.abspath(p) for p in roots if p.is_dir()}
    seen: set[str] = set()
    out = []
    for p in roots:
        key = os.path.abspath(p)
        if key in seen or any(_walk_reaches(parent, key) for parent in _ancestors(key) if parent in dirs):
            continue
        seen.add(key)
        out.append(p)
    return out


def _ancestors(abspath: str) -> Iterator[str]:
    parent = os.path.dirname(abspath)
    while parent != abspath:
        yield parent
        abspath, parent = parent, os.path.dirname(parent)


def _walk_reaches(folder: str, path: str) -> bool:
    """Whether :func:`walk_image_files` on ``folder`` reaches ``path`` below it (both absolute), by the rules of
    :func:`fakescope.data.discovery.walk`: every folder between them is entered (not hidden, not a mask folder,
    not a symbolic link), and ``path`` is a folder it enters too or a media file it lists."""
    names = os.path.relpath(path, folder).split(os.sep)
    node = folder
    for name in names:
        node = os.path.join(node, name)
        if name.startswith(".") or is_mask_folder(name):
            return False
        if node != path and (os.path.islink(node) or not os.path.isdir(node)):
            return False
    if os.path.isdir(path) and not os.path.islink(path):
        return True
    return os.path.lexists(path) and is_media_name(names[-1])


def scan_reads(paths: Iterable[str | Path], target: str | Path) -> bool:
    """Whether a scan of ``paths`` reads the file ``target``: it is one of them, or a folder among them lists it
    (as :func:`walk_image_files` would). Compared as resolved paths, so ``..`` or a symbolic link does not hide
    it."""
    target = os.path.realpath(target)
    if os.path.isdir(target):
        return False
    for p in paths:
        root = os.path.realpath(p)
        if root == target or (target.startswith(root.rstrip(os.sep) + os.sep) and os.path.isdir(root)
                              and _walk_reaches(root, target)):
            return True
    return False


def is_media_name(name: str) -> bool:
    """An image or a video, by its name: what a folder scan reads."""
    return is_image_name(name) or is_video_file(name)


def walk_image_files(roots: Iterable[str | Path]) -> Iterator[Path]:
    """Image and video files below ``roots``, streamed as listed (:func:`fakescope.data.discovery.walk` unsorted):
    memory does not grow with the file count, and the order is the same on every call for an unchanged folder,
    which is what lets each worker take its own share. A path given explicitly is yielded as it is, so a missing
    file becomes an error entry."""
    for root in roots:
        if Path(root).is_dir():
            yield from walk(root, is_media_name, sort=False)
        else:
            yield Path(root)


def count_files(roots: Iterable[str | Path], skip: Container[str] | None = None) -> int:
    """How many files a scan of ``roots`` will score (a cheap listing pass, for progress bars)."""
    return sum(1 for p in walk_image_files(distinct_roots(roots)) if not skip or str(p) not in skip)
