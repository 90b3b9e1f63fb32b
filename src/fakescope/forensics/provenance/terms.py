"""IPTC digital source types (cv.iptc.org/newscodes/digitalsourcetype), grouped by what they declare.

C2PA actions and XMP both name the term by URI; fakescope reports its last path segment. The groups follow the
IPTC definitions: "algorithmic" and "synthetic" terms declare machine-made pixels, capture terms a camera or
scanner, and the remaining terms a person's (or an algorithm's minor) edits of captured media.
"""
from __future__ import annotations

#: Terms declaring that the pixels (or part of them) were made by an algorithm (generative AI included).
AI_SOURCE_TYPES = frozenset({"trainedAlgorithmicMedia", "compositeWithTrainedAlgorithmicMedia", "algorithmicMedia",
                             "compositeSynthetic"})
#: Terms declaring a capture of the real world.
CAPTURE_SOURCE_TYPES = frozenset({"digitalCapture", "computationalCapture", "negativeFilm", "positiveFilm", "print"})
#: Terms declaring edits of, or composites made from, captured media, and media made by hand in software.
EDIT_SOURCE_TYPES = frozenset({"humanEdits", "minorHumanEdits", "compositeCapture", "algorithmicallyEnhanced",
                               "composite", "digitalCreation", "digitalArt", "screenCapture"})


def source_type_term(uri: str | None) -> str | None:
    """``http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia`` -> ``trainedAlgorithmicMedia``."""
    if not uri:
        return None
    term = uri.strip().rstrip("/").rsplit("/", 1)[-1]
    return term or None
