"""Copy-move evidence (SIFT self-matching): a pasted copy is found with its displacement; an untouched image is not."""
import copy
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.ndimage import gaussian_filter

from fakescope.forensics.copymove import (
    MAX_STRETCH,
    SIZE,
    copy_move_map,
    distinct,
    find_copy_move,
    g2nn_pairs,
    pasted_probability,
    stretch,
    with_copy_move,
)
from fakescope.inference.detector import Detector
from fakescope.inference.scan import scan


def texture(seed: int = 0) -> np.ndarray:
    """A 320 x 320 RGB image of smoothed noise at two scales: many keypoints, none repeated."""
    rng = np.random.default_rng(seed)
    grey = gaussian_filter(rng.normal(size=(SIZE, SIZE)), 1.5) + 0.5 * gaussian_filter(rng.normal(size=(SIZE, SIZE)), 6)
    grey = (grey - grey.min()) / np.ptp(grey) * 255
    return np.repeat(grey[..., None], 3, axis=2).astype(np.uint8)


def copied(img: np.ndarray, dy: int = 140, dx: int = 130) -> np.ndarray:
    out = img.copy()
    out[40 + dy:120 + dy, 40 + dx:120 + dx] = img[40:120, 40:120]
    return out


def test_a_copied_block_is_found_with_its_displacement():
    found = find_copy_move(copied(texture()))
    assert found.inliers >= 20
    shift = found.transform[:, 2]
    assert np.allclose(np.abs(shift), [130, 140], atol=2)  # x, y; the pair's order may be either way round
    assert np.allclose(found.transform[:, :2], np.eye(2), atol=0.05)
    moved = found.pairs[:, 2:] - found.pairs[:, :2]
    assert np.allclose(np.abs(moved), [130, 140], atol=3)


def test_an_untouched_image_has_no_evidence():
    for seed in range(3):
        assert find_copy_move(texture(seed)).inliers < 5


def test_any_size_and_grey_input_is_analysed_at_one_size():
    img = copied(texture())
    big = np.asarray(Image.fromarray(img).resize((2 * SIZE, 2 * SIZE), Image.Resampling.BICUBIC))
    assert find_copy_move(big).inliers >= 20
    assert find_copy_move(img[..., 0]).inliers == find_copy_move(img).inliers
    assert find_copy_move(np.zeros((64, 48, 3), np.uint8)).inliers == 0  # flat: no keypoint, no evidence


def test_the_same_image_gives_the_same_evidence():
    img = copied(texture(1))
    first = find_copy_move(img)
    find_copy_move(texture(2))
    assert np.array_equal(find_copy_move(img).pairs, first.pairs)


@pytest.mark.parametrize("far", [True, False])
def test_g2nn_keeps_distinct_repeats_far_enough_apart(far):
    rng = np.random.default_rng(0)
    descriptors = rng.uniform(0, 100, size=(40, 128)).astype(np.float32)
    descriptors[7] = descriptors[3] + 0.1
    points = rng.uniform(0, 300, size=(40, 2)).astype(np.float32)
    points[7] = points[3] + (50 if far else 3)
    src, dst = g2nn_pairs(descriptors, points, min_distance=10)
    assert len(src) == (1 if far else 0)
    if far:
        assert {tuple(src[0]), tuple(dst[0])} == {tuple(points[3]), tuple(points[7])}


def test_a_pair_found_twice_at_one_place_counts_once():
    """SIFT puts a keypoint with two orientations at one place twice; both match the same pair, in either order."""
    src = np.array([[10.2, 20.0], [10.0, 20.1], [150.0, 20.0], [30.0, 40.0]], np.float32)
    dst = np.array([[110.0, 20.0], [110.1, 19.9], [10.0, 20.0], [130.0, 40.0]], np.float32)
    kept_src, kept_dst = distinct(src, dst)
    # the first two are one pair; the third is the pair (10, 20) -> (150, 20), another place; the fourth is new
    assert len(kept_src) == 3 and np.array_equal(kept_src, src[[0, 2, 3]]) and np.array_equal(kept_dst, dst[[0, 2, 3]])
    assert len(distinct(src[:0], dst[:0])[0]) == 0


def test_stretch_is_one_for_a_rotated_scaled_copy_and_large_for_a_squashed_one():
    angle = np.deg2rad(30)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 5.0], [np.sin(angle), np.cos(angle), 7.0]])
    assert stretch(rotation) == pytest.approx(1.0)
    assert stretch(np.c_[1.5 * rotation[:, :2], [0.0, 0.0]]) == pytest.approx(1.0)
    assert stretch(np.array([[3.0, 0.0, 0.0], [0.0, 1.0, 0.0]])) == pytest.approx(3.0)
    assert stretch(np.zeros((2, 3))) == float("inf")


def test_a_transform_stretched_more_than_the_limit_is_no_evidence(monkeypatch):
    """RANSAC's affine fit can join two unrelated groups of chance matches with a transform that squashes one way:
    that is no evidence, however many pairs it explains."""
    import cv2

    img = copied(texture())
    assert find_copy_move(img).inliers >= 20
    fit = cv2.estimateAffine2D

    def squashed(src, dst, **kwargs):
        transform, inliers = fit(src, dst, **kwargs)
        transform[:, :2] = transform[:, :2] @ np.diag([1.0, 1.0 / (MAX_STRETCH + 0.5)])
        return transform, inliers

    monkeypatch.setattr(cv2, "estimateAffine2D", squashed)
    assert find_copy_move(img).inliers == 0


def test_an_image_and_the_default_detector_input_made_from_it_give_the_same_evidence():
    """The scan analyses the detector's squashed input; explain and the benches pass the decoded image: the same
    squash makes both read the same pixels."""
    from fakescope.data.preprocess import Preprocess

    big = Image.fromarray(copied(texture())).resize((700, 460), Image.Resampling.BICUBIC)
    prepared = Preprocess(input_mode="rgb", size=SIZE).to_array(big)
    full, squashed = find_copy_move(np.asarray(big)), find_copy_move(prepared)
    assert full.inliers >= 20 and np.array_equal(full.pairs, squashed.pairs)


def test_the_map_covers_the_copy_and_its_source_only():
    img = Image.fromarray(copied(texture())).resize((480, 400))  # another size: the map is at the image's
    m = copy_move_map(img)
    assert m.shape == (400, 480) and set(np.unique(m)) == {0.0, 1.0}
    sx, sy = 480 / SIZE, 400 / SIZE
    inside = np.zeros_like(m, bool)
    for y0, x0 in ((40, 40), (180, 170)):  # the source block and its copy, in the 320-px image
        inside[round(y0 * sy):round((y0 + 80) * sy), round(x0 * sx):round((x0 + 80) * sx)] = True
    assert m[inside].mean() > 0.5 and m[~inside].mean() < 0.02
    assert copy_move_map(Image.fromarray(texture())).max() == 0.0


def test_explain_draws_the_copy_move_view(tmp_path):
    from typer.testing import CliRunner

    from fakescope.cli import app
    from fakescope.explain import explain_image, heatmap

    img = Image.fromarray(copied(texture()))
    view = explain_image(img, "copy-move")
    assert view.size == img.size and view.mode == "RGB"
    assert not np.array_equal(np.asarray(view), np.asarray(img))
    assert np.array_equal(heatmap(img, "copy-move"), copy_move_map(img))
    img.save(tmp_path / "moved.png")
    res = CliRunner().invoke(app, ["explain", str(tmp_path / "moved.png"), "--method", "copy-move",
                                   "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert Image.open(tmp_path / "out" / "moved_copy-move.png").size == img.size


def test_the_evidence_adds_to_the_probability_only_from_four_pairs():
    pairs = np.array([0, 3, 4, 8, 20, 100])
    q = pasted_probability(pairs)
    assert q[0] == q[1] == 0.0 and np.all(np.diff(q[1:]) > 0) and q[-1] < 1.0
    p = np.full(len(pairs), 0.3)
    combined = with_copy_move(p, pairs)
    assert np.allclose(combined[:2], 0.3) and np.allclose(combined, 1 - 0.7 * (1 - q))


@pytest.fixture(scope="module")
def default_detectors():
    """The shipped default, which checks for copy-moves, and the same with the check switched off."""
    checked = Detector.load("default", backend="auto", device="cpu")
    unchecked = Detector.load("default", backend="auto", device="cpu")
    unchecked.meta = dataclasses.replace(unchecked.meta, info={**unchecked.meta.info, "copy_move": False})
    return checked, unchecked


def test_the_shipped_default_counts_copy_moves_in_its_scan_results(tmp_path, default_detectors):
    checked, unchecked = default_detectors
    assert checked.checks_copy_moves and not unchecked.checks_copy_moves
    Image.fromarray(copied(texture())).save(tmp_path / "moved.png")
    Image.fromarray(texture()).save(tmp_path / "plain.png")
    with_check = {Path(r.path).name: r for r in scan([tmp_path], checked, workers=0)}
    without = {Path(r.path).name: r for r in scan([tmp_path], unchecked, workers=0)}
    moved, plain = with_check["moved.png"], with_check["plain.png"]
    assert moved.copy_move >= 20 and plain.copy_move < 4
    assert moved.fake_probability == pytest.approx(
        float(with_copy_move(np.array([without["moved.png"].fake_probability]), np.array([moved.copy_move]))[0]))
    assert moved.fake_probability > without["moved.png"].fake_probability
    assert plain.fake_probability == pytest.approx(without["plain.png"].fake_probability)
    assert without["moved.png"].copy_move is None and "copy_move" not in without["moved.png"].to_dict()
    assert moved.to_dict()["copy_move"] == moved.copy_move


def test_a_recipe_turns_the_check_on_in_its_checkpoint():
    from fakescope.config import TrainConfig
    from fakescope.data.preprocess import Preprocess
    from fakescope.engine.train import _meta

    pre = Preprocess(input_mode="rgb", size=64)
    assert _meta(TrainConfig(copy_move=True), pre, {}, {}, 1.0).info["copy_move"] is True
    assert "copy_move" not in _meta(TrainConfig(), pre, {}, {}, 1.0).info


def test_a_scan_can_leave_the_check_out(tmp_path, default_detectors):
    from typer.testing import CliRunner

    from fakescope.cli import app

    checked, _ = default_detectors
    Image.fromarray(copied(texture())).save(tmp_path / "moved.png")
    (off,) = scan([tmp_path], checked, workers=0, copy_move=False)
    (on,) = scan([tmp_path], checked, workers=0)
    assert off.copy_move is None and on.copy_move >= 20 and off.fake_probability < on.fake_probability
    rows = {}
    for flag in ("--copy-move", "--no-copy-move"):
        res = CliRunner().invoke(app, ["scan", str(tmp_path), "--format", "json", "--quiet", flag])
        assert res.exit_code == 0, res.output
        rows[flag] = json.loads(res.stdout)[0]
    assert rows["--copy-move"]["copy_move"] == on.copy_move and "copy_move" not in rows["--no-copy-move"]
    # each row records the threshold for the way it was scored
    assert (rows["--copy-move"]["threshold"], rows["--no-copy-move"]["threshold"]) == (
        checked.decision_threshold(), checked.decision_threshold(copy_move=False))
    assert (on.threshold, off.threshold) == (checked.decision_threshold(), checked.decision_threshold(copy_move=False))
    assert rows["--no-copy-move"]["fake_probability"] == pytest.approx(off.fake_probability)
    import fakescope

    (api_off,) = fakescope.scan([tmp_path], copy_move=False)
    assert api_off.copy_move is None and api_off.fake_probability == pytest.approx(off.fake_probability)
    # the evidence only raises scores, so the final scores' threshold is never below the model's
    assert checked.decision_threshold() == checked.threshold >= checked.decision_threshold(copy_move=False)
    assert checked.decision_threshold(False) == checked.meta.info["metrics"]["model_threshold"]


def test_a_recipe_with_the_check_ships_the_threshold_of_its_final_scores(tmp_path):
    """Trained with ``copy_move: true``, the checkpoint checks for copy-moves, and its threshold bounds the false
    alarms of the scores a scan gives (the model's with the evidence added), not of the model's alone."""
    from fakescope.checkpoint import read_meta
    from fakescope.config import load_config
    from fakescope.engine.loaders import folder_splits
    from fakescope.engine.train import fit

    for label, seed in (("real", 0), ("fake", 100)):
        folder = tmp_path / "data" / label
        folder.mkdir(parents=True)
        for i in range(8):  # half of the fakes carry a pasted copy, which the model alone cannot know
            arr = copied(texture(seed + i)) if label == "fake" and i % 2 else texture(seed + i)
            Image.fromarray(arr).resize((96, 96)).save(folder / f"{label}{i}.png")
    cfg = load_config(None, {"model.name": "efficientnet_lite0", "model.size": 64, "epochs": 1, "batch_size": 4,
                             "device": "cpu", "data.path": [str(tmp_path / "data")], "data.workers": 0,
                             "data.cache": False, "data.val_fraction": 0.5, "target_fpr": 0.25,
                             "copy_move": True, "out": str(tmp_path / "run")})
    result = fit(cfg)
    meta = read_meta(result.checkpoint)
    assert meta.info["copy_move"] is True and meta.info["metrics"]["model_threshold"] is not None
    detector = Detector.load(str(result.checkpoint), device="cpu")
    ((_, val),) = folder_splits(cfg)
    scored = list(scan([s.path for s in val if s.label == 0], detector, workers=0))
    assert scored and all(r.copy_move is not None for r in scored)
    assert np.mean([r.fake_probability >= meta.threshold for r in scored]) <= 0.25


def test_a_recipe_with_the_check_needs_a_whole_image_rgb_detector(tmp_path):
    from fakescope.config import load_config
    from fakescope.engine.train import fit

    cfg = load_config(None, {"model.name": "ela-cnn", "copy_move": True, "device": "cpu",
                             "data.path": [str(tmp_path)], "out": str(tmp_path / "run")})
    with pytest.raises(ValueError, match="copy_move needs a whole-image RGB detector"):
        fit(cfg)


def test_the_table_and_the_report_show_the_pairs_found(tmp_path, default_detectors):
    from rich.console import Console

    from fakescope.evaluation.report import write_report
    from fakescope.inference.output import results_table

    checked, _ = default_detectors
    Image.fromarray(copied(texture())).save(tmp_path / "moved.png")
    Image.fromarray(texture()).save(tmp_path / "plain.png")
    results = sorted(scan([tmp_path], checked, workers=0), key=lambda r: r.path)
    moved, plain = results
    console = Console(width=200, record=True)
    console.print(results_table(results))
    text = console.export_text()
    assert "copy-move" in text and f"{moved.copy_move} pairs" in text
    html = Path(write_report(results, checked, tmp_path / "report.html")).read_text()
    assert f"copy-move: {moved.copy_move} matched keypoint pairs" in html and html.count("matched keypoint pairs") == 1


def test_evaluate_measures_the_model_alone_on_request(tmp_path, default_detectors):
    from typer.testing import CliRunner

    from fakescope.cli import app

    checked, _ = default_detectors
    (tmp_path / "real").mkdir()
    (tmp_path / "fake").mkdir()
    Image.fromarray(texture(3)).save(tmp_path / "real" / "plain.png")
    Image.fromarray(copied(texture(4))).save(tmp_path / "fake" / "moved.png")
    out = {}
    for flag in ("--copy-move", "--no-copy-move"):
        res = CliRunner().invoke(app, ["evaluate", "--data", str(tmp_path), "--format", "json", "--quiet", flag])
        assert res.exit_code == 0, res.output
        out[flag] = json.loads(res.stdout)
    assert out["--copy-move"]["threshold"] == pytest.approx(checked.threshold)
    assert out["--no-copy-move"]["threshold"] == pytest.approx(checked.decision_threshold(copy_move=False))


def test_a_video_is_labelled_at_the_model_threshold(monkeypatch, tmp_path, default_detectors):
    """A video's frames are scored by the model alone, so its label uses the model's own threshold, not the one
    chosen with the copy-move evidence; the report states the threshold of each kind of file, as its rows carry them."""
    import fakescope.inference.scan as scan_module
    from fakescope.evaluation.report import ReportWriter
    from fakescope.inference.scan import Prepared, ScanResult, score_prepared
    from fakescope.video.scan import PreparedVideo, VideoOptions

    shipped, _ = default_detectors
    # the model's own threshold a little under the final scores' one (the shipped two may coincide)
    metrics = {**shipped.meta.info["metrics"], "model_threshold": shipped.threshold - 0.05}
    checked = copy.copy(shipped)
    checked.meta = dataclasses.replace(shipped.meta, info={**shipped.meta.info, "metrics": metrics})
    between = (checked.decision_threshold(copy_move=False) + checked.threshold) / 2
    monkeypatch.setattr(scan_module, "score_video", lambda video, detector, batch_size: (between, []))
    item = Prepared(0, "clip.mp4", PreparedVideo("clip.mp4", [], VideoOptions()), None)
    ((_, result),) = score_prepared([item], checked)
    assert result.label == "fake" and result.copy_move is None
    assert result.threshold == checked.decision_threshold(copy_move=False)
    image = ScanResult("photo.png", 0.1, "real", checked.name, threshold=checked.threshold)
    writer = ReportWriter(tmp_path / "report.html", checked)
    for row in (result, image):
        writer.add(row)
    assert writer.thresholds == {"videos": checked.decision_threshold(False), "images": checked.threshold}
    page = writer.close().read_text()
    both = f"{checked.threshold:.3f} (images), {checked.decision_threshold(False):.3f} (videos)"
    assert f"threshold {both}" in page and f"Flagged = fake probability &ge; {both}" in page
