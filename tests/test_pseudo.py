"""Pseudo-fakes made from reals, and per-source balancing."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fakescope.config import PSEUDO_KINDS, load_config
from fakescope.data.dataset import ImageDataset
from fakescope.data.discovery import Sample
from fakescope.data.preprocess import Preprocess
from fakescope.data.pseudo import KINDS, make_pseudo_fake, self_blend, working_size
from fakescope.data.splits import source_sample_weights
from fakescope.video.faces import FaceDetector
from tests.conftest import REPO, make_image


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_each_kind_changes_pixels_inside_its_mask(kind):
    img = make_image((120, 96), seed=3)
    out, mask = make_pseudo_fake(img, 224, np.random.default_rng(1), (kind,))
    a, b = np.asarray(img, np.int16), np.asarray(out, np.int16)
    assert out.size == img.size and mask.shape == (96, 120) and mask.dtype == np.uint8
    changed = np.abs(a - b).max(axis=2) > 8
    assert changed.any() and mask.any()
    assert not (mask == 0).any() or changed[mask == 0].mean() < 0.02  # what changed is where the mask says


def test_a_face_is_blended_over_its_outline_and_other_photos_anywhere():
    """SBI's mask follows the face MTCNN finds (eyes and mouth inside it, the background outside), and the blend's
    pixels change only there; a photo without a face gets a blob."""
    photo = Image.open(REPO / "examples" / "images" / "real" / "ffhq_00266.jpg").convert("RGB").resize((200, 200))
    frame = Image.new("RGB", (360, 300), (90, 110, 130))
    frame.paste(photo, (120, 60))
    arr = np.asarray(frame)
    (face,) = FaceDetector().detect(frame)
    for seed in range(3):
        out, mask = self_blend(arr, np.random.default_rng(seed))
        inside = [(round(x), round(y)) for x, y in (*face.eyes, *face.mouth)]
        assert all(mask[y, x] == 255 for x, y in inside)
        assert not mask[:, :100].any() and not mask[:40].any()  # the plain background around the photo is kept
        changed = np.abs(out.astype(np.int16) - arr).max(axis=2) > 8
        assert changed.any() and changed[mask == 0].mean() < 0.01
    _, blob = self_blend(np.asarray(make_image((160, 120), seed=2)), np.random.default_rng(0))
    assert 0 < (blob > 0).mean() < 0.8


def test_pseudo_kinds_are_checked_and_reach_the_dataset(tmp_path):
    assert PSEUDO_KINDS == tuple(KINDS)  # the config names the kinds without importing them
    cfg = load_config(None, {"data.pseudo_fakes": 0.5, "data.balance": "source", "data.pseudo_kinds": "[blend]"})
    assert cfg.data.pseudo_kinds == ["blend"]
    with pytest.raises(ValueError, match="data.pseudo_kinds.*one or more of blend, copy_move, upsample"):
        load_config(None, {"data.pseudo_kinds": "[blend, splice]"})
    path = tmp_path / "0.png"
    make_image((64, 64), seed=0).save(path)
    ds = ImageDataset([Sample(path, 0)], Preprocess.for_mode("rgb", 32, imagenet_norm=True), pixel_targets=[None],
                      pseudo=[True], pseudo_kinds=("upsample",))
    assert ds[0][2].all()  # an up-sampling trace changes every pixel: its mask is the whole image


def test_large_images_are_made_at_twice_the_model_size():
    assert max(working_size(make_image((1000, 600)), 224).size) == 448
    assert working_size(make_image((300, 200)), 224).size == (300, 200)


def test_source_weights_balance_sources_classes_and_pseudo_share():
    # source 0: 100 reals, 300 fakes, and a pseudo-fake entry per real; source 1: 25 reals only (+ pseudo entries)
    sources = [0] * 400 + [0] * 100 + [1] * 25 + [1] * 25
    labels = [0] * 100 + [1] * 300 + [1] * 100 + [0] * 25 + [1] * 25
    pseudo = [False] * 400 + [True] * 100 + [False] * 25 + [True] * 25
    w = source_sample_weights(sources, labels, pseudo, pseudo_share=0.4)
    s, y, p = np.asarray(sources), np.asarray(labels), np.asarray(pseudo)
    total = w.sum()
    assert w[s == 0].sum() / w[s == 1].sum() == pytest.approx(np.sqrt(400) / np.sqrt(25))  # sqrt of real files
    for src in (0, 1):
        assert w[(s == src) & (y == 0)].sum() == pytest.approx(w[(s == src) & (y == 1)].sum())
    assert w[(s == 0) & p].sum() / w[(s == 0) & (y == 1)].sum() == pytest.approx(0.4)
    assert w[(s == 1) & p].sum() == pytest.approx(w[(s == 1) & (y == 1)].sum())  # a real-only source: all pseudo
    assert total == pytest.approx(len(w))


def test_dataset_turns_flagged_reals_into_fakes_with_their_masks(tmp_path):
    paths = []
    for i in range(2):
        paths.append(tmp_path / f"{i}.png")
        make_image((64, 64), seed=i).save(paths[-1])
    samples = [Sample(Path(p), 0) for p in paths]
    pre = Preprocess.for_mode("rgb", 32, imagenet_norm=True)
    ds = ImageDataset(samples, pre, pixel_targets=[None, None], pseudo=[False, True])
    assert ds.labels == [0, 1]
    _, label, mask, known = ds[1]
    assert label == 1 and known == 1.0 and mask.shape == (32, 32) and mask.any()
    _, label, mask, known = ds[0]
    assert label == 0 and known == 0.0
