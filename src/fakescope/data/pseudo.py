"""Pseudo-fakes made from real photos: fakes whose content is real, so a detector must learn the traces of making.

Three kinds, each a function ``(uint8 HWC array, rng) -> (array, uint8 mask)`` (mask: 255 where pixels changed):

- ``blend``: a self-blended image (Shiohara & Yamasaki, CVPR 2022, "Detecting Deepfakes with Self-Blended
  Images"): a colour-, sharpness- and geometry-shifted copy of the image pasted back into it through a soft random
  blob. Face crops (a face centred in the frame) get the blob around the centre, where a face swap blends; other
  photos anywhere. No landmarks: the shared face sets are centred crops.
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
from PIL import Image, ImageFilter
from scipy.ndimage import gaussian_filter

from fakescope.data.synth import SynthConfig, copy_move

PseudoFake = Callable[[np.ndarray, np.random.Generator], tuple[np.ndarray, np.ndarray]]


def blob_mask(h: int, w: int, rng: np.random.Generator, centred: bool) -> np.ndarray:
    """A soft random blob in [0, 1]: an ellipse deformed by low-frequency noise, edges blurred by a random width."""
    cy, cx = (h / 2, w / 2) if centred else (rng.uniform(0.25, 0.75) * h, rng.uniform(0.25, 0.75) * w)
    ry, rx = rng.uniform(0.18, 0.38) * h, rng.uniform(0.15, 0.35) * w
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2
    noise = gaussian_filter(rng.normal(size=(h, w)).astype(np.float32), sigma=min(h, w) / 10)
    hard = (r + 2.0 * noise / (noise.std() + 1e-6) * 0.15 < 1.0).astype(np.float32)
    soft = gaussian_filter(hard, sigma=rng.uniform(0.5, 0.04 * min(h, w) + 0.5))
    return np.clip(soft * rng.uniform(1.0, 1.6), 0.0, 1.0)


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


def self_blend(arr: np.ndarray, rng: np.random.Generator, centred: bool = False) -> tuple[np.ndarray, np.ndarray]:
    h, w = arr.shape[:2]
    mask = blob_mask(h, w, rng, centred)[..., None]
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
    "blend": lambda a, rng: self_blend(a, rng, centred=rng.random() < 0.5),
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
