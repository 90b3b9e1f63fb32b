"""Pseudo-fakes made from real photos: fakes whose content is real, so a detector must learn the traces of making.

Three kinds, each a function ``(uint8 HWC array, rng) -> (array, uint8 mask)`` (mask: 255 where pixels changed):

- ``blend``: a self-blended image (Shiohara & Yamasaki, CVPR 2022, "Detecting Deepfakes with Self-Blended
  Images"): a colour-, sharpness- and geometry-shifted copy of the image pasted back into it through a soft mask.
  Where MTCNN (:mod:`fakescope.video.faces`) finds a face, the mask is the face's outline as a face swap blends
  it (:func:`face_hull`, from the eyes and mouth corners), deformed and feathered as SBI does; in other photos, a
  random blob anywhere.
- ``copy_move``: a region moved inside the image (``fakescope synth``'s copy-move, with its soft edges).
- ``upsample``: the image shrunk by 2 and enlarged again by a randomly initialised transposed convolution (after
  Jeong et al., AAAI 2022, "FingerprintNet": reals given the periodic up-sampling traces of a generator's decoder
  while keeping their content), each output phase normalised so colours stay.

:func:`make_pseudo_fake` draws one kind. The images are made at most ``2 * size`` pixels on their longer side first,
so that the traces survive the detector's resize to ``size``.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from scipy.ndimage import gaussian_filter

from fakescope.data.synth import SynthConfig, copy_move
from fakescope.video.faces import FaceBox, FaceDetector

PseudoFake = Callable[[np.ndarray, np.random.Generator], tuple[np.ndarray, np.ndarray]]


def _wobble(hard: np.ndarray, rng: np.random.Generator, amount: float) -> np.ndarray:
    """A hard mask's outline moved in and out by smooth noise (about ``amount`` of the shorter side), then feathered
    by a random width: the soft edge a blend leaves."""
    h, w = hard.shape
    noise = gaussian_filter(rng.normal(size=(h, w)).astype(np.float32), sigma=min(h, w) / 10)
    level = gaussian_filter(hard.astype(np.float32), sigma=amount * min(h, w) + 0.5)
    moved = ((level + (noise / (noise.std() + 1e-6)) * 0.15 > 0.5) & (level > 0.1)).astype(np.float32)
    soft = gaussian_filter(moved, sigma=rng.uniform(0.5, 0.04 * min(h, w) + 0.5))
    return np.clip(soft * rng.uniform(1.0, 1.6), 0.0, 1.0)


def blob_mask(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A soft random blob in [0, 1] anywhere in the image: an ellipse with a wobbled, feathered outline."""
    cy, cx = rng.uniform(0.25, 0.75) * h, rng.uniform(0.25, 0.75) * w
    ry, rx = rng.uniform(0.18, 0.38) * h, rng.uniform(0.15, 0.35) * w
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return _wobble(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1.0, rng, 0.05)


#: A face's outline in units of the eye distance (across) and the eyes-to-mouth distance (down) from the midpoint
#: of the eyes: brows, temples, cheeks, jaw and chin (what a 68-point landmark hull covers).
_FACE_OUTLINE = np.array([(-1.0, -0.45), (-0.55, -0.75), (0.0, -0.8), (0.55, -0.75), (1.0, -0.45), (1.1, 0.2),
                          (1.0, 0.9), (0.75, 1.45), (0.4, 1.75), (0.0, 1.85), (-0.4, 1.75), (-0.75, 1.45),
                          (-1.0, 0.9), (-1.1, 0.2)], np.float32)


def face_hull(face: FaceBox, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """The soft mask of a face swap's blend region: :data:`_FACE_OUTLINE` placed by the face's eyes and mouth
    corners, stretched by a random 0.8-1.1 along each axis (SBI's choice among inner and outer hulls), its outline
    wobbled and feathered. Values in [0, 1]."""
    eyes, mouth = np.asarray(face.eyes, np.float32), np.asarray(face.mouth, np.float32)
    centre, across = eyes.mean(axis=0), eyes[1] - eyes[0]
    eye_distance = float(np.hypot(*across)) or 1.0
    u = across / eye_distance
    v = np.array([-u[1], u[0]], np.float32)
    down = float((mouth.mean(axis=0) - centre) @ v)
    if down < 0:  # mouth above the eyes: an upside-down face
        v, down = -v, -down
    stretch = rng.uniform(0.8, 1.1, size=2)
    pts = centre + np.outer(_FACE_OUTLINE[:, 0] * stretch[0] * eye_distance, u) \
        + np.outer(_FACE_OUTLINE[:, 1] * stretch[1] * max(down, 0.5 * eye_distance), v)
    canvas = Image.new("L", (w, h), 0)
    ImageDraw.Draw(canvas).polygon([tuple(p) for p in pts.tolist()], fill=1)
    return _wobble(np.asarray(canvas, bool), rng, 0.02)


#: Faces for the face blends: the largest one, at least a fifth of the shorter side (a face swap's subject).
_FACES = FaceDetector(backend="mtcnn", min_size=0.2, max_faces=1)


def _shifted_copy(arr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The image with its colours, sharpness and geometry slightly changed (the 'source' face of a blend)."""
    img = Image.fromarray(arr)
    h, w = arr.shape[:2]
    if rng.random() < 0.5:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.5)))
    else:
        img = img.filter(ImageFilter.UnsharpMask(radius=2, percent=int(rng.uniform(50, 150)), threshold=0))
    scale = rng.uniform(0.95, 1.05)
    dx, dy = rng.uniform(-0.03, 0.03) * w, rng.uniform(-0.03, 0.03) * h
    img = img.transform((w, h), Image.Transform.AFFINE, (1 / scale, 0, dx, 0, 1 / scale, dy),
                        resample=Image.Resampling.BILINEAR)
    out = np.asarray(img).astype(np.float32)
    gain = rng.uniform(0.9, 1.1, size=3).astype(np.float32)
    bias = rng.uniform(-12, 12, size=3).astype(np.float32)
    return np.clip(out * gain + bias, 0, 255)


def self_blend(arr: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The shifted copy blended in over the largest face's outline (:func:`face_hull`), or over a random blob
    where no face is found; at full strength or, as in SBI, sometimes partly (a quarter to three quarters)."""
    h, w = arr.shape[:2]
    faces = _FACES.detect(Image.fromarray(arr))
    found = faces and faces[0].eyes is not None and faces[0].mouth is not None
    mask = (face_hull(faces[0], h, w, rng) if found else blob_mask(h, w, rng))[..., None]
    mask = mask * rng.choice([0.25, 0.5, 0.75, 1.0, 1.0, 1.0])
    out = _shifted_copy(arr, rng) * mask + arr.astype(np.float32) * (1 - mask)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8), (mask[..., 0] > 0.1).astype(np.uint8) * 255


def _copy_move(arr: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    t = copy_move(arr, rng, SynthConfig())
    return t.image, t.mask.astype(np.uint8) * 255


def _phase_normalised_kernel(rng: np.random.Generator, strength: float) -> np.ndarray:
    """A 4x4 stride-2 transposed-convolution kernel: bilinear plus noise, each of its 4 output phases summing to 1."""
    base = np.outer([0.25, 0.75, 0.75, 0.25], [0.25, 0.75, 0.75, 0.25])
    k = base * (1 + strength * rng.normal(size=(4, 4)))
    for py in range(2):
        for px in range(2):
            k[py::2, px::2] /= k[py::2, px::2].sum()
    return k


def upsample_trace(arr: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Shrink by 2, enlarge by a random transposed convolution per channel (plus a little channel mixing)."""
    h, w = arr.shape[:2]
    small = np.asarray(Image.fromarray(arr).resize((max(4, w // 2), max(4, h // 2)), Image.Resampling.BOX),
                       np.float32)
    sh, sw = small.shape[:2]
    out = np.zeros((2 * sh + 2, 2 * sw + 2, 3), np.float32)
    strength = rng.uniform(0.1, 0.6)
    for c in range(3):
        k = _phase_normalised_kernel(rng, strength)
        for ky in range(4):
            for kx in range(4):
                out[ky:ky + 2 * sh:2, kx:kx + 2 * sw:2, c] += small[..., c] * k[ky, kx]
    out = out[1:1 + 2 * sh, 1:1 + 2 * sw]
    mix = np.eye(3, dtype=np.float32) + rng.normal(scale=0.03, size=(3, 3)).astype(np.float32)
    out = out @ (mix / mix.sum(axis=1, keepdims=True)).T
    out = np.asarray(Image.fromarray(np.clip(out + 0.5, 0, 255).astype(np.uint8)).resize((w, h), Image.Resampling.NEAREST))
    return out, np.full((h, w), 255, np.uint8)


KINDS: dict[str, PseudoFake] = {
    "blend": self_blend,
    "copy_move": _copy_move,
    "upsample": upsample_trace,
}


def working_size(img: Image.Image, size: int) -> Image.Image:
    """The image at most ``2 * size`` on its longer side, so traces made at this scale survive the model's resize."""
    side = max(img.size)
    if side <= 2 * size:
        return img
    f = 2 * size / side
    return img.resize((max(8, round(img.width * f)), max(8, round(img.height * f))), Image.Resampling.BILINEAR)


def make_pseudo_fake(img: Image.Image, size: int, rng: np.random.Generator,
                     kinds: tuple[str, ...] = tuple(KINDS)) -> tuple[Image.Image, np.ndarray]:
    """A pseudo-fake of one random kind from the real ``img``, and its mask (uint8, 255 = changed)."""
    base = np.asarray(working_size(img.convert("RGB"), size))
    out, mask = KINDS[kinds[int(rng.integers(len(kinds)))]](base, rng)
    return Image.fromarray(out), mask
