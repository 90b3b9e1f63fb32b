"""Dataset layouts, labels, seeded leak-free splits and class balancing."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fakescope.data.discovery import LayoutError, Sample, discover_samples, folder_label
from fakescope.data.splits import (
    class_weights,
    sample_weights,
    scene_groups,
    scene_ids,
    split_folders,
    stratified_split,
)

FORMATS = ("jpg", "png", "bmp", "tif", "webp")


def touch_images(folder: Path, n: int = 2, fmt: str = "jpg", prefix: str = "img") -> list[Path]:
    """Tiny real image files (discovery only looks at names, but keep them valid)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = folder / f"{prefix}{i}.{fmt}"
        Image.new("RGB", (4, 4), (i * 40, 0, 0)).save(p)
        paths.append(p)
    return paths


def labels_by_folder(samples: list[Sample], root: Path) -> Counter:
    return Counter((str(s.path.parent.relative_to(root)), s.label) for s in samples)


@pytest.mark.parametrize("real, fake", [("real", "fake"), ("Real", "FAKE"), ("0_real", "1_fake"), ("Au", "Tp"),
                                        ("Au", "Sp"), ("au", "tp"), ("authentic", "tampered")])
def test_two_class_folder_layouts(tmp_path, real, fake):
    touch_images(tmp_path / real, 3)
    touch_images(tmp_path / fake, 2)
    samples = discover_samples(tmp_path)
    assert labels_by_folder(samples, tmp_path) == Counter({(real, 0): 3, (fake, 1): 2})


@pytest.mark.parametrize("splits, classes", [(("Train", "Val", "Test"), ("Real", "Fake")),
                                             (("train", "val", "test"), ("real", "fake"))])
def test_split_then_class_layouts(tmp_path, splits, classes):
    for s in splits:
        touch_images(tmp_path / s / classes[0], 2)
        touch_images(tmp_path / s / classes[1], 1)
    samples = discover_samples(tmp_path)
    assert len(samples) == 9
    expected = Counter({**{(f"{s}/{classes[0]}", 0): 2 for s in splits}, **{(f"{s}/{classes[1]}", 1): 1 for s in splits}})
    assert labels_by_folder(samples, tmp_path) == expected
    assert len(discover_samples(tmp_path / splits[2])) == 3  # one split on its own


def test_nested_subfolders_and_all_formats(tmp_path):
    for fmt in FORMATS:
        touch_images(tmp_path / "real" / "camera_a" / "2021", 1, fmt, prefix="r")
        touch_images(tmp_path / "fake" / "gan" / fmt, 1, fmt, prefix="f")
    (tmp_path / "real" / "notes.txt").write_text("not an image")
    (tmp_path / "fake" / ".hidden.jpg").write_bytes(b"")
    samples = discover_samples(tmp_path)
    assert Counter(s.label for s in samples) == {0: 5, 1: 5}
    assert {s.path.suffix[1:] for s in samples} == set(FORMATS)
    assert all(s.path.is_file() for s in samples)
    assert samples == discover_samples(tmp_path)  # stable order


def test_upper_case_extensions_count(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "fake").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "real" / "A.JPG", format="JPEG")
    Image.new("RGB", (4, 4)).save(tmp_path / "fake" / "B.Png", format="PNG")
    assert [s.label for s in discover_samples(tmp_path)] == [1, 0]


def test_mask_folders_are_ignored(tmp_path):
    touch_images(tmp_path / "real", 2)
    touch_images(tmp_path / "fake", 2)
    touch_images(tmp_path / "fake" / "masks", 3, "png")  # masks inside a class folder
    touch_images(tmp_path / "masks", 3, "png")  # CASIA-style masks/ next to the class folders
    touch_images(tmp_path / "GT" / "fake", 2, "png")  # a ground-truth tree that mirrors the class folders
    samples = discover_samples(tmp_path)
    assert Counter(s.label for s in samples) == {0: 2, 1: 2}
    assert not any(p.lower() in ("masks", "gt") for s in samples for p in s.path.parts)


def test_labels_zero_real_one_fake():
    assert [folder_label(n) for n in ("real", "REAL", "0_real", "Au", "pristine")] == [0] * 5
    assert [folder_label(n) for n in ("fake", "1_fake", "Tp", "SP", "forged", "synthetic")] == [1] * 6
    assert [folder_label(n) for n in ("train", "images", "realistic", "fakes_old")] == [None] * 4


def test_folder_without_images_raises_clear_layout_error(tmp_path):
    touch_images(tmp_path / "photos", 2)  # images, but no class folders
    (tmp_path / "real").mkdir()
    with pytest.raises(LayoutError) as info:
        discover_samples(tmp_path)
    message = str(info.value)
    assert str(tmp_path) in message and "real/ + fake/" in message and "\n" not in message


@pytest.mark.parametrize("make", ["missing", "file"])
def test_bad_root_raises_layout_error(tmp_path, make):
    root = tmp_path / "x.jpg"
    if make == "file":
        Image.new("RGB", (4, 4)).save(root)
    with pytest.raises(LayoutError, match="does not exist" if make == "missing" else "not a folder"):
        discover_samples(root)


# --- splits -------------------------------------------------------------------------------------------------

def plain_samples(n_real: int, n_fake: int) -> list[Sample]:
    return [Sample(Path(f"r{i}.jpg"), 0) for i in range(n_real)] + [Sample(Path(f"f{i}.jpg"), 1) for i in range(n_fake)]


def test_stratified_split_sizes_and_ratio():
    samples = plain_samples(60, 40)
    train, val = stratified_split(samples, 0.2, seed=0)
    assert (len(train), len(val)) == (80, 20)
    assert Counter(s.label for s in val) == {0: 12, 1: 8}
    assert set(train).isdisjoint(val) and set(train) | set(val) == set(samples)


def test_split_is_seeded():
    samples = plain_samples(50, 50)
    a = stratified_split(samples, 0.2, seed=1)
    assert a == stratified_split(samples, 0.2, seed=1)
    assert set(a[1]) != set(stratified_split(samples, 0.2, seed=2)[1])


def test_split_rejects_bad_fraction():
    for bad in (0.0, 1.0, -0.1):
        with pytest.raises(ValueError):
            stratified_split(plain_samples(5, 5), bad)


def casia_like(n_scenes: int = 40) -> list[Sample]:
    """Authentic scenes and splices built from pairs of them, plus copy-moves inside one scene."""
    cats = ["ani", "arc", "art", "cha", "nat", "pla", "sec", "txt"]
    scene = [(cats[i % len(cats)], 10 + i) for i in range(n_scenes)]
    samples = [Sample(Path(f"real/Au_{c}_{n:04d}.jpg"), 0) for c, n in scene]
    for k in range(0, n_scenes - 1, 2):
        (c1, n1), (c2, n2) = scene[k], scene[k + 1]
        samples.append(Sample(Path(f"fake/Sp_D_CNN_A_{c1}{n1:04d}_{c2}{n2:04d}_{k:04d}.jpg"), 1))
        samples.append(Sample(Path(f"fake/Sp_S_NRN_A_{c1}{n1:04d}_{c1}{n1:04d}_{k + 1:04d}.jpg"), 1))
    return samples


def assert_no_scene_straddles(train: list[Sample], val: list[Sample]) -> None:
    side = {}
    for name, part in (("train", train), ("val", val)):
        for s in part:
            for sid in scene_ids(s.path.stem):
                assert side.setdefault(sid, name) == name, f"scene {sid} is in both train and val"


def test_scene_ids_parse_casia_names():
    assert scene_ids("Au_ani_0049") == ["ani0049"]
    assert scene_ids("Sp_D_CNN_A_ani0049_ani0084_0266") == ["ani0049", "ani0084"]
    assert scene_ids("Tp_S_NRN_S_N_arc00013_arc00013_01113") == ["arc00013", "arc00013"]
    assert scene_ids("00AUP94LQS") == [] and scene_ids("photo_0001") == []


def test_scene_groups_join_splices_with_their_sources():
    samples = casia_like(6)
    groups = scene_groups(samples)
    by_name = dict(zip((s.path.stem for s in samples), groups))
    assert by_name["Au_ani_0010"] == by_name["Au_arc_0011"] == by_name["Sp_D_CNN_A_ani0010_arc0011_0000"]
    assert by_name["Au_ani_0010"] != by_name["Au_art_0012"]
    assert len(set(groups)) == 3


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_casia_scene_groups_never_straddle(seed):
    samples = casia_like(40)
    train, val = stratified_split(samples, 0.2, seed=seed)
    assert_no_scene_straddles(train, val)
    assert len(train) + len(val) == len(samples) and set(train).isdisjoint(val)
    assert 0.1 <= len(val) / len(samples) <= 0.3
    assert {s.label for s in val} == {0, 1}


def test_real_casia_split_keeps_scenes_together(data_root):
    folder = data_root / "casia1"
    if not folder.is_dir():
        pytest.skip(f"{folder} not found")
    samples = discover_samples(folder)
    assert not any("masks" in s.path.parts for s in samples)
    train, val = stratified_split(samples, 0.2, seed=0)
    assert_no_scene_straddles(train, val)
    assert 0.15 <= len(val) / len(samples) <= 0.25
    val_fake = np.mean([s.label for s in val])
    all_fake = np.mean([s.label for s in samples])
    assert abs(val_fake - all_fake) < 0.1


def test_split_folders_splits_each_dataset_on_its_own():
    a = [Sample(Path(f"a/r{i}.jpg"), 0) for i in range(20)] + [Sample(Path(f"a/f{i}.jpg"), 1) for i in range(20)]
    b = [Sample(Path(f"b/r{i}.jpg"), 0) for i in range(10)] + [Sample(Path(f"b/f{i}.jpg"), 1) for i in range(10)]
    _, val = split_folders([a, b], 0.2, seed=0)
    assert Counter(s.path.parts[0] for s in val) == {"a": 8, "b": 4}
    assert set(stratified_split(a, 0.2, 0)[1]) <= set(val)  # adding a dataset does not move another's split


def test_class_and_sample_weights_balance():
    labels = [0] * 30 + [1] * 10
    w = class_weights(labels)
    assert w == pytest.approx([40 / 60, 40 / 20])
    assert (w[np.array(labels)]).mean() == pytest.approx(1.0)  # mean 1 over samples: the loss scale is kept
    from sklearn.utils.class_weight import compute_class_weight

    assert w == pytest.approx(compute_class_weight("balanced", classes=np.array([0, 1]), y=np.array(labels)))
    sw = sample_weights(labels)
    assert sw.shape == (40,)
    assert sw[np.array(labels) == 0].sum() == pytest.approx(sw[np.array(labels) == 1].sum())
    assert class_weights([1, 1, 1]).tolist() == [0.0, 0.5]  # a missing class gets weight 0


def test_balanced_sampler_draws_classes_equally():
    import torch
    from torch.utils.data import WeightedRandomSampler

    labels = np.array([0] * 90 + [1] * 10)
    g = torch.Generator().manual_seed(0)
    drawn = labels[list(WeightedRandomSampler(torch.as_tensor(sample_weights(labels)), 4000, generator=g))]
    assert 0.45 < drawn.mean() < 0.55
