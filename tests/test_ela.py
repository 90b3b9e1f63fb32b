"""Error Level Analysis, step by step, the preprocessing built on it, and the on-disk array cache."""
from __future__ import annotations

import io
from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import make_image
from PIL import Image, ImageChops

from fakescope.data.cache import ArrayCache
from fakescope.data.dataset import ImageDataset
from fakescope.data.discovery import Sample
from fakescope.data.preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocess
from fakescope.forensics.ela import (
    ela_difference,
    ela_image,
    ela_map,
    reduce_bit_depth,
    resave_jpeg,
    scale_contrast,
    to_grayscale,
)


def jpeg_roundtrip(img: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def test_resave_jpeg_keeps_size_and_mode_and_changes_pixels():
    img = make_image((37, 29))
    out = resave_jpeg(img, 75)
    assert out.size == (37, 29) and out.mode == "RGB"
    assert not np.array_equal(np.asarray(out), np.asarray(img))  # lossy: the codec did run


def test_resave_jpeg_accepts_non_rgb_input():
    assert resave_jpeg(make_image(mode="L")).mode == "RGB"
    assert resave_jpeg(make_image(mode="RGBA")).mode == "RGB"


def test_difference_with_itself_resaved_is_nonnegative_and_matches_numpy():
    img = make_image((40, 32))
    diff = ela_difference(img, 90)
    expected = np.abs(np.asarray(img, np.int16) - np.asarray(resave_jpeg(img, 90), np.int16))
    arr = np.asarray(diff)
    assert arr.dtype == np.uint8 and arr.min() >= 0
    np.testing.assert_array_equal(arr, expected)
    assert arr.max() > 0


def test_lower_quality_resave_gives_larger_difference():
    img = make_image((64, 64))
    assert np.asarray(ela_difference(img, 50)).mean() > np.asarray(ela_difference(img, 95)).mean()


def test_scale_contrast_maps_max_to_255_and_keeps_zero():
    arr = np.zeros((4, 5, 3), np.uint8)
    arr[0, 0] = (10, 5, 0)
    arr[1, 1] = (20, 0, 0)
    out = np.asarray(scale_contrast(Image.fromarray(arr)))
    assert out.max() == 255 and out[1, 1, 0] == 255
    assert out[0, 0, 0] == 128  # 10 * 255 / 20 = 127.5, rounded
    assert out[2, 2].tolist() == [0, 0, 0]


def test_scale_contrast_of_black_image_stays_black():
    out = np.asarray(scale_contrast(Image.new("RGB", (3, 3))))
    assert out.max() == 0


def test_to_grayscale_has_three_equal_channels():
    out = np.asarray(to_grayscale(make_image()))
    assert out.shape[2] == 3
    assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 1], out[..., 2])
    assert out.std() > 0


@pytest.mark.parametrize("bits, allowed_step", [(1, 128), (3, 32), (6, 4)])
def test_reduce_bit_depth_keeps_only_top_bits(bits, allowed_step):
    arr = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, axis=2)
    out = np.asarray(reduce_bit_depth(Image.fromarray(arr), bits))
    assert np.all(out % allowed_step == 0)  # low bits cleared
    assert np.all(arr - out < allowed_step)  # high bits kept
    assert len(np.unique(out)) == 2 ** bits


def test_reduce_bit_depth_eight_is_identity_and_bad_bits_raise():
    img = make_image()
    assert np.array_equal(np.asarray(reduce_bit_depth(img, 8)), np.asarray(img))
    for bad in (0, 9):
        with pytest.raises(ValueError):
            reduce_bit_depth(img, bad)


def test_ela_image_is_uint8_full_range_rgb():
    img = make_image((50, 30))
    out = ela_image(img, 90)
    arr = np.asarray(out)
    assert out.size == (50, 30) and out.mode == "RGB" and arr.dtype == np.uint8
    assert arr.max() == 255 and arr.min() >= 0
    gray = np.asarray(ela_image(img, 90, grayscale=True, bits=4))
    assert np.array_equal(gray[..., 0], gray[..., 2]) and np.all(gray % 16 == 0)


def test_ela_map_is_single_channel_unit_range():
    m = ela_map(make_image((30, 20)))
    assert m.shape == (20, 30) and m.dtype == np.float32
    assert m.min() >= 0.0 and m.max() == pytest.approx(1.0)


def test_pasted_region_has_higher_ela_than_the_rest():
    background = make_image((128, 128), seed=1)
    for _ in range(3):  # a photo saved several times: its JPEG error has settled
        background = jpeg_roundtrip(background, 90)
    composite = background.copy()
    composite.paste(make_image((48, 48), seed=7), (40, 40))  # never-compressed pasted region
    composite = jpeg_roundtrip(composite, 90)
    ela = np.asarray(ela_image(composite, 90), np.float64).mean(axis=2)
    pasted = np.zeros(ela.shape, bool)
    pasted[40:88, 40:88] = True
    assert ela[pasted].mean() > 2.5 * ela[~pasted].mean()


@pytest.mark.parametrize("mode, channels", [("ela", 3), ("rgb", 3), ("rgb+ela", 6)])
def test_preprocess_to_array_shape(mode, channels):
    size = 128 if mode == "ela" else 64
    pre = Preprocess.for_mode(mode, size, imagenet_norm=True)
    arr = pre.to_array(make_image((90, 70)))
    assert arr.shape == (size, size, channels) and arr.dtype == np.uint8 and arr.flags["C_CONTIGUOUS"]


def test_preprocess_rgb_plus_ela_stacks_rgb_then_ela():
    img = make_image((64, 64))
    both = Preprocess.for_mode("rgb+ela", 64, imagenet_norm=False).to_array(img)
    rgb = Preprocess.for_mode("rgb", 64, imagenet_norm=False).to_array(img)
    ela = Preprocess.for_mode("ela", 64, imagenet_norm=False).to_array(img)
    np.testing.assert_array_equal(both[..., :3], rgb)
    np.testing.assert_array_equal(both[..., 3:], ela)


def test_to_tensor_normalises_per_channel():
    pre = Preprocess.for_mode("rgb+ela", 4, imagenet_norm=True)
    arr = np.zeros((2, 4, 4, 6), np.uint8)
    arr[..., 0] = 255
    arr[..., 3] = 51
    t = pre.to_tensor(arr)
    assert t.shape == (2, 6, 4, 4) and t.dtype == torch.float32
    assert torch.allclose(t[:, 0], torch.tensor((1 - IMAGENET_MEAN[0]) / IMAGENET_STD[0]))
    assert torch.allclose(t[:, 1], torch.tensor(-IMAGENET_MEAN[1] / IMAGENET_STD[1]))
    assert torch.allclose(t[:, 3], torch.tensor(0.2))  # ELA channels: plain [0, 1] scaling
    assert pre.to_tensor(arr[0]).shape == (1, 6, 4, 4)


def test_preprocess_validates_and_round_trips():
    with pytest.raises(ValueError):
        Preprocess(input_mode="hsv")
    with pytest.raises(ValueError):
        Preprocess(input_mode="rgb+ela")  # 3 mean values for 6 channels
    pre = Preprocess.for_mode("rgb+ela", 96, imagenet_norm=True, ela_quality=80)
    assert Preprocess.from_dict(pre.to_dict()) == pre
    with pytest.raises(ValueError):
        Preprocess.from_dict({**pre.to_dict(), "bogus": 1})


def test_preprocess_key_tracks_pixels_not_normalisation():
    pre = Preprocess()
    assert pre.key() == Preprocess().key()
    assert pre.key() != replace(pre, ela_quality=80).key()
    assert pre.key() != replace(pre, size=64).key()
    assert pre.key() == replace(pre, mean=(0.5,) * 3).key()  # normalisation happens after the cache


def _cached(tmp_path, pre: Preprocess, path):
    cache = ArrayCache(tmp_path / "cache", pre.key())
    from fakescope.forensics.io import load_image

    return cache, cache.get(path, lambda: pre.to_array(load_image(path)))


def test_cache_second_read_is_hit_with_same_array(tmp_path, tiny_images):
    (path,) = tiny_images(1)
    pre = Preprocess()
    cache, first = _cached(tmp_path, pre, path)
    second = cache.get(path, lambda: pytest.fail("a cached array must not be recomputed"))
    assert (cache.misses, cache.hits) == (1, 1)
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(first, pre.to_array(Image.open(path).convert("RGB")))


def test_cache_changed_file_is_a_miss(tmp_path, tiny_images):
    (path,) = tiny_images(1)
    cache, first = _cached(tmp_path, Preprocess(), path)
    make_image((48, 40), seed=99).save(path, quality=90)
    second = cache.get(path, lambda: Preprocess().to_array(Image.open(path).convert("RGB")))
    assert (cache.misses, cache.hits) == (2, 0)
    assert not np.array_equal(first, second)


def test_cache_changed_preprocessing_is_a_miss(tmp_path, tiny_images):
    (path,) = tiny_images(1)
    _cached(tmp_path, Preprocess(), path)
    cache, _ = _cached(tmp_path, Preprocess(ela_quality=75), path)
    assert (cache.misses, cache.hits) == (1, 0)
    cache_again, _ = _cached(tmp_path, Preprocess(), path)
    assert (cache_again.misses, cache_again.hits) == (0, 1)


def test_cache_recovers_from_corrupt_entry(tmp_path, tiny_images):
    (path,) = tiny_images(1)
    cache, first = _cached(tmp_path, Preprocess(), path)
    cache._entry(path).write_bytes(b"not an npy file")
    again = cache.get(path, lambda: Preprocess().to_array(Image.open(path).convert("RGB")))
    np.testing.assert_array_equal(first, again)
    assert cache.misses == 2


def test_dataset_uses_cache_only_without_augmentation(tmp_path, tiny_images):
    paths = tiny_images(3)
    samples = [Sample(p, i % 2) for i, p in enumerate(paths)]
    ds = ImageDataset(samples, Preprocess(), None, tmp_path / "cache")
    items = [ds[i] for i in range(3)] + [ds[i] for i in range(3)]
    assert (ds.cache.misses, ds.cache.hits) == (3, 3)
    assert items[0][0].shape == (128, 128, 3) and [it[1] for it in items[:3]] == [0, 1, 0]
    assert ImageDataset(samples, Preprocess(), lambda im: im, tmp_path / "cache").cache is None


def test_ela_matches_the_reference_recipe_bit_for_bit():
    """The fast path (no needless copies, NumPy max) gives exactly the classic PIL recipe's ELA image."""
    img = make_image((97, 61))
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="JPEG", quality=90)
    buf.seek(0)
    diff = ImageChops.difference(img.convert("RGB"), Image.open(buf).convert("RGB"))
    scale = 255.0 / (max(hi for _, hi in diff.getextrema()) or 1)
    reference = np.clip(np.asarray(diff, np.float32) * np.float32(scale) + 0.5, 0, 255).astype(np.uint8)
    assert np.array_equal(np.asarray(ela_image(img, 90)), reference)
