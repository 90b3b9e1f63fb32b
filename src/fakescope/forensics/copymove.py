"""Copy-move evidence: a region of an image repeated elsewhere in the same image, found without training.

SIFT self-matching after Amerini et al. (IEEE TIFS 2011, "A SIFT-based forensic method for copy-move attack
detection and transformation recovery"): the image's own keypoints are matched against each other with the
generalised 2-nearest-neighbour test (g2NN: each neighbour is kept while it is much closer than the next one, so a
region copied several times keeps all its copies), pairs closer than ``min_distance`` pixels are dropped (a
keypoint's own neighbourhood), a pair SIFT found twice at one place (a keypoint with two orientations) is counted
once, and one affine transform is fitted to the rest with RANSAC. Its inliers are the evidence: a pasted copy,
rotated or scaled or not, brings many keypoint pairs that one transform maps onto each other, while an untouched photo
rarely does (repeated structure such as windows or tiles is the exception). A transform that stretches one way more
than ``MAX_STRETCH`` times the other is no evidence: it is how RANSAC joins two unrelated groups of chance matches.

It finds copies inside one image only: not splices from another image, not synthesis. Because it learns nothing,
it behaves the same on kinds of image no detector was trained on (docs/benchmarks/held-out.md, "Copy-move
evidence"). :func:`copy_move_map` draws where the copy and its source are (``fakescope explain --method copy-move``).
OpenCV and NumPy only.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from PIL import Image

from fakescope.forensics.io import squash

#: Side of the square the image is resized to before matching (as the default detector squashes its input).
SIZE = 320
#: At most this many keypoints (the strongest), so that matching them all against each other stays small.
MAX_KEYPOINTS = 1500
#: g2NN ratio: a neighbour is kept while its descriptor distance is below this share of the next neighbour's.
RATIO = 0.5
#: Pixels (at ``SIZE``) the map widens the matched keypoints' hull by: about the patch a keypoint describes.
MARGIN = 8
#: Neighbours each keypoint is tested against.
NEIGHBOURS = 10
#: Largest ratio of the transform's two singular values taken as evidence (a copy scaled 2x one way, 1x the other).
MAX_STRETCH = 2.0


@dataclass(frozen=True)
class CopyMove:
    """The matched pairs one affine transform explains, in the analysed image's pixels (``SIZE`` x ``SIZE``)."""

    #: (K, 4): x, y of a keypoint and x, y of its copy, for each of the transform's inliers.
    pairs: np.ndarray
    #: (2, 3) affine transform mapping the first point of each pair onto the second; None without evidence.
    transform: np.ndarray | None

    @property
    def inliers(self) -> int:
        """Number of keypoint pairs the transform explains: 0 for most untouched photos."""
        return len(self.pairs)


NONE = CopyMove(np.zeros((0, 4), np.float32), None)

#: Fewer pairs are no evidence: any three pairs fit an affine transform exactly, a fourth is the first that can miss.
MIN_PAIRS = 4
#: The share of images the evidence's probability assumes hold a pasted copy (its calibration's prior).
PRIOR = 0.1
#: P(a copy was pasted | n pairs) = sigmoid(SLOPE * log(1 + n) + INTERCEPT) from ``MIN_PAIRS`` up (0 below),
#: fitted on reals of faces140k, diffusiondb, wildfaces and cameras and a ``fakescope synth`` copy-move made from
#: each, at the prior ``PRIOR`` (``python bench/copy_move.py``; docs/benchmarks/held-out.md, "Copy-move evidence").
SLOPE, INTERCEPT = 1.853, -3.141


def _sift():
    import cv2

    return cv2.SIFT_create(nfeatures=MAX_KEYPOINTS)  # OpenCV's other defaults (contrast threshold 0.04)


def g2nn_pairs(descriptors: np.ndarray, points: np.ndarray, min_distance: float,
               ratio: float = RATIO, neighbours: int = NEIGHBOURS) -> tuple[np.ndarray, np.ndarray]:
    """(source, target) point arrays (M, 2) of the keypoint pairs the g2NN test accepts, each unordered pair once,
    farther apart than ``min_distance``."""
    n = len(descriptors)
    if n < 3:
        return np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32)
    d = descriptors.astype(np.float32)
    sq = (d * d).sum(1)
    dist = np.maximum(sq[:, None] + sq[None, :] - 2.0 * d @ d.T, 0.0)  # squared, so the ratio is squared too
    np.fill_diagonal(dist, np.inf)
    k = min(neighbours, n - 1)
    idx = np.argpartition(dist, k - 1, axis=1)[:, :k]
    near = np.take_along_axis(dist, idx, 1)
    order = np.argsort(near, axis=1)
    idx, near = np.take_along_axis(idx, order, 1), np.take_along_axis(near, order, 1)
    # neighbour j is kept while every ratio up to it passes: d_1/d_2 < r, ..., d_j/d_(j+1) < r
    keep = np.cumprod(near[:, :-1] < ratio * ratio * near[:, 1:], axis=1).astype(bool)
    i, j = np.nonzero(keep)
    t = idx[i, j]
    once = i < t
    i, t = i[once], t[once]
    far = np.linalg.norm(points[i] - points[t], axis=1) > min_distance
    return distinct(points[i[far]], points[t[far]])


def distinct(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The pairs with each unordered pair of places (to the pixel) once: SIFT puts a keypoint with two dominant
    orientations at one place twice, and both copies match the same pair."""
    if len(src) == 0:
        return src, dst
    a, b = np.round(src).astype(np.int64), np.round(dst).astype(np.int64)
    first = (a[:, 0] < b[:, 0]) | ((a[:, 0] == b[:, 0]) & (a[:, 1] <= b[:, 1]))
    ends = np.concatenate([np.where(first[:, None], a, b), np.where(first[:, None], b, a)], axis=1)
    keep = np.sort(np.unique(ends, axis=0, return_index=True)[1])
    return src[keep], dst[keep]


def stretch(transform: np.ndarray) -> float:
    """Ratio of the larger to the smaller singular value of an affine transform's linear part (1: no stretch)."""
    s = np.linalg.svd(transform[:, :2], compute_uv=False)
    return float(s[0] / s[1]) if s[1] > 0 else float("inf")


def find_copy_move(image: np.ndarray, min_distance: float = 10.0) -> CopyMove:
    """The copy-move evidence in ``image`` (uint8, H x W x 3 RGB or H x W grey), analysed at ``SIZE`` x ``SIZE``
    (:func:`~fakescope.forensics.io.squash`, as the default detector makes its input: an image and that input agree)."""
    import cv2

    if image.shape[:2] != (SIZE, SIZE):
        image = np.asarray(squash(Image.fromarray(np.ascontiguousarray(image)), SIZE))
    grey = image if image.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
    keypoints, descriptors = _sift().detectAndCompute(grey, None)
    if descriptors is None:
        return NONE
    points = np.array([kp.pt for kp in keypoints], np.float32)
    src, dst = g2nn_pairs(descriptors, points, min_distance)
    if len(src) < 3:
        return NONE
    cv2.setRNGSeed(0)  # RANSAC's draws: the same image gives the same evidence whatever was analysed before
    transform, inliers = cv2.estimateAffine2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=3.0)
    if transform is None or inliers is None or stretch(transform) > MAX_STRETCH:
        return NONE
    mask = inliers.ravel().astype(bool)
    return CopyMove(np.concatenate([src[mask], dst[mask]], axis=1), transform)


def regions_map(found: CopyMove, width: int, height: int) -> np.ndarray:
    """Where the copy and its source are: a float map (height, width) in [0, 1], 1 inside the convex hull of each
    side's matched keypoints widened by the ``MARGIN`` their descriptors read around them, 0 elsewhere and
    everywhere when there is no evidence (fewer than three pairs)."""
    import cv2

    out = np.zeros((height, width), np.uint8)
    if found.inliers >= 3:
        scale = np.array([width / SIZE, height / SIZE], np.float32)
        for side in (found.pairs[:, :2], found.pairs[:, 2:]):
            cv2.fillConvexPoly(out, cv2.convexHull(np.round(side * scale).astype(np.int32)), 1)
        radius = np.maximum(np.round(MARGIN * scale).astype(int), 1)
        out = cv2.dilate(out, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, tuple(2 * radius + 1)))
    return out.astype(np.float32)


def copy_move_map(img: Image.Image) -> np.ndarray:
    """:func:`regions_map` of ``img``'s copy-move evidence, at its size."""
    return regions_map(find_copy_move(np.asarray(img.convert("RGB"))), img.width, img.height)


def pasted_probability(pairs: np.ndarray) -> np.ndarray:
    """P(a copy was pasted) for each image's inlier count (:data:`SLOPE`, :data:`INTERCEPT`); 0 under
    :data:`MIN_PAIRS`."""
    n = np.asarray(pairs, np.float64)
    return np.where(n >= MIN_PAIRS, 1.0 / (1.0 + np.exp(-(SLOPE * np.log1p(n) + INTERCEPT))), 0.0)


def with_copy_move(probabilities: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """The fake probability once the copy-move evidence is added (either is enough: 1 - (1 - p)(1 - q)); an image
    without evidence keeps its probability."""
    return 1.0 - (1.0 - np.asarray(probabilities, np.float64)) * (1.0 - pasted_probability(pairs))


def pairs_of(arrays: list[np.ndarray]) -> np.ndarray:
    """Inlier counts of ``arrays`` (uint8 RGB, H x W x 3 or more channels: the first three are read), analysed in
    threads (OpenCV and NumPy's products release the GIL)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(min(len(arrays), os.cpu_count() or 1) or 1) as pool:
        return np.fromiter(pool.map(lambda a: find_copy_move(a[..., :3]).inliers, arrays), int, len(arrays))
