"""Detection metrics (fake = positive class) against scikit-learn and hand computation."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from fakescope.evaluation.metrics import compute_metrics, equal_error_rate, expected_calibration_error

Y = [0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 0]
P = [0.05, 0.2, 0.45, 0.5, 0.7, 0.9, 0.65, 0.3, 0.55, 0.99, 0.1, 0.35]


def test_metrics_equal_scikit_learn():
    m = compute_metrics(Y, P, threshold=0.5)
    pred = (np.asarray(P) >= 0.5).astype(int)
    assert m["n"] == 12 and m["threshold"] == 0.5
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(Y, pred))
    assert m["precision"] == pytest.approx(skm.precision_score(Y, pred))
    assert m["recall"] == pytest.approx(skm.recall_score(Y, pred))
    assert m["f1"] == pytest.approx(skm.f1_score(Y, pred))
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(Y, P))
    assert m["average_precision"] == pytest.approx(skm.average_precision_score(Y, P))
    assert m["confusion_matrix"] == skm.confusion_matrix(Y, pred).tolist()


def test_confusion_matrix_layout_by_hand():
    # reals: 0.05 0.2 0.45 0.35 -> tn; 0.5 0.7 -> fp (0.5 counts as fake: p >= threshold)
    # fakes: 0.9 0.65 0.55 0.99 -> tp; 0.3 0.1 -> fn
    m = compute_metrics(Y, P, threshold=0.5)
    assert m["confusion_matrix"] == [[4, 2], [2, 4]]
    assert m["accuracy"] == pytest.approx(8 / 12)
    assert m["precision"] == pytest.approx(4 / 6) and m["recall"] == pytest.approx(4 / 6)
    assert m["accuracy_real"] == pytest.approx(4 / 6) and m["accuracy_fake"] == pytest.approx(4 / 6)


def test_threshold_changes_hard_metrics_not_rank_metrics():
    low, high = compute_metrics(Y, P, 0.25), compute_metrics(Y, P, 0.8)
    assert low["confusion_matrix"] == [[2, 4], [1, 5]]
    assert high["confusion_matrix"] == [[6, 0], [4, 2]]
    assert low["roc_auc"] == high["roc_auc"] and low["eer"] == high["eer"]


def test_eer_by_hand():
    y = [0, 0, 0, 0, 1, 1, 1, 1]
    s = [0.1, 0.2, 0.3, 0.6, 0.4, 0.7, 0.8, 0.9]
    # at threshold 0.6 one real of four is flagged (FPR 1/4) and one fake of four is missed (FNR 1/4)
    eer, thr = equal_error_rate(y, s)
    assert eer == pytest.approx(0.25) and thr == pytest.approx(0.6)
    m = compute_metrics(y, s)
    assert m["eer"] == pytest.approx(0.25) and m["accuracy_at_eer_threshold"] == pytest.approx(0.75)


def test_eer_of_perfect_and_inverted_scores():
    y = [0, 0, 1, 1]
    assert equal_error_rate(y, [0.1, 0.2, 0.8, 0.9])[0] == 0.0
    assert equal_error_rate(y, [0.9, 0.8, 0.2, 0.1])[0] == 1.0


def test_ece_of_perfectly_calibrated_bins_is_zero():
    y, p = [], []
    for prob, n_fake in [(0.7, 70), (0.2, 20), (0.95, 95), (0.4, 40)]:
        p += [prob] * 100
        y += [1] * n_fake + [0] * (100 - n_fake)  # exactly prob of them are fake
    assert expected_calibration_error(y, p) == pytest.approx(0.0, abs=1e-9)
    assert compute_metrics(y, p)["ece"] == pytest.approx(0.0, abs=1e-9)


def test_ece_of_over_confident_model_is_large():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 1000)
    correct = rng.random(1000) < 0.6  # right 60% of the time ...
    pred = np.where(correct, y, 1 - y)
    p = np.where(pred == 1, 0.99, 0.01)  # ... but always 99% sure
    ece = expected_calibration_error(y, p)
    assert ece == pytest.approx(0.99 - correct.mean(), abs=1e-9)
    assert ece > 0.3


def test_one_class_input_gives_none_rank_metrics():
    m = compute_metrics([1, 1, 1], [0.9, 0.2, 0.7])
    assert m["roc_auc"] is None and m["average_precision"] is None and m["eer"] is None
    assert m["eer_threshold"] is None and m["accuracy_at_eer_threshold"] is None
    assert m["accuracy"] == pytest.approx(2 / 3)
    assert m["accuracy_real"] is None and m["accuracy_fake"] == pytest.approx(2 / 3)
    assert m["confusion_matrix"] == [[0, 0], [1, 2]]


def test_empty_input_raises():
    with pytest.raises(ValueError):
        compute_metrics([], [])


def test_threshold_at_fpr_flags_at_most_the_allowed_share_of_reals():
    from fakescope.evaluation.metrics import threshold_at_fpr

    rng = np.random.default_rng(0)
    y = np.array([0] * 200 + [1] * 100)
    p = np.concatenate([rng.uniform(0, 1, 200), rng.uniform(0.5, 1, 100)])
    for target in (0.0, 0.05, 0.2):
        t = threshold_at_fpr(y, p, target)
        fpr = float(np.mean(p[y == 0] >= t))
        assert fpr <= target
        # the lowest such threshold: one step below it, the rate goes over the target
        assert np.mean(p[y == 0] >= np.nextafter(t, -np.inf)) > target or t == 0.0


def test_threshold_at_fpr_by_group_bounds_every_group():
    from fakescope.evaluation.metrics import threshold_at_fpr

    rng = np.random.default_rng(1)
    # set "a" has easy reals, set "b" reals that score higher; set "c" has only fakes (no bound to hold)
    p = np.concatenate([rng.uniform(0, 0.4, 300), rng.uniform(0.2, 0.9, 100), rng.uniform(0.5, 1, 150),
                        rng.uniform(0, 1, 20)])
    y = np.array([0] * 400 + [1] * 170)
    g = np.array(["a"] * 300 + ["b"] * 100 + ["a"] * 150 + ["c"] * 20)
    pooled, grouped = threshold_at_fpr(y, p, 0.05), threshold_at_fpr(y, p, 0.05, g)
    assert np.mean(p[(g == "b") & (y == 0)] >= pooled) > 0.05  # the pooled bound lets set b take the false alarms
    for key in ("a", "b"):
        assert np.mean(p[(g == key) & (y == 0)] >= grouped) <= 0.05
    assert grouped == threshold_at_fpr(y[g == "b"], p[g == "b"], 0.05)  # the strictest group sets it
    assert threshold_at_fpr(y, p, 0.05, ["one"] * len(y)) == pooled  # one group: the pooled bound
    with pytest.raises(ValueError, match="needs real samples"):
        threshold_at_fpr(y[g == "c"], p[g == "c"], 0.05, g[g == "c"])


def test_held_out_fpr_counts_reals_the_threshold_was_not_chosen_on():
    from fakescope.evaluation.metrics import held_out_fpr, threshold_at_fpr

    rng = np.random.default_rng(2)
    # many reals from one distribution: a threshold chosen on 4/5 of them flags about 5% of the rest
    y = np.array([0] * 4000 + [1] * 50)
    p = rng.uniform(0, 1, y.size)
    r = held_out_fpr(y, p, 0.05)
    assert r["n_real"] == 4000 and r["per_group"] == {}
    assert 0.04 < r["fpr"] < 0.06
    # few reals: in-sample the bound always holds, held out it is exceeded on average (2/33 expected for 40 reals),
    # the optimism the estimate exposes
    y = np.zeros(40, dtype=int)
    draws = [rng.uniform(0, 1, 40) for _ in range(300)]
    assert all(np.mean(p >= threshold_at_fpr(y, p, 0.05)) <= 0.05 for p in draws)
    assert np.mean([held_out_fpr(y, p, 0.05, seed=i)["fpr"] for i, p in enumerate(draws)]) > 0.055
    # by group: every group's held-out reals are counted under the strictest group's threshold
    g = np.array(["a"] * 2000 + ["b"] * 2000)
    p = np.concatenate([rng.uniform(0, 0.5, 2000), rng.uniform(0, 1, 2000)])
    r = held_out_fpr(np.zeros(4000, dtype=int), p, 0.05, g)
    assert set(r["per_group"]) == {"a", "b"}
    assert r["per_group"]["a"] == 0.0 and 0.035 < r["per_group"]["b"] < 0.065
    assert r["fpr"] == pytest.approx((r["per_group"]["a"] + r["per_group"]["b"]) / 2)
    with pytest.raises(ValueError, match="at least 5 real samples"):
        held_out_fpr([0, 0, 1], [0.1, 0.2, 0.9], 0.05)


def test_threshold_from_reals_warns_only_on_few_reals():
    from fakescope.evaluation.evaluate import FEW_REALS, threshold_from_reals

    rng = np.random.default_rng(4)
    many = rng.uniform(0, 1, FEW_REALS).tolist()
    out = threshold_from_reals(many, "m", 0.5, 0.05)
    assert out["warning"] is None and out["n"] == FEW_REALS
    assert out["flagged_at_threshold"] == pytest.approx(0.05)  # the lowest such threshold: 5 of 100 distinct scores
    assert out["flagged_at_model_threshold"] == pytest.approx(np.mean(np.asarray(many) >= 0.5))
    few = threshold_from_reals(many[: FEW_REALS - 1], "m", 0.5, 0.05)
    assert f"{FEW_REALS - 1} reals is rough" in few["warning"]
    assert threshold_from_reals(many[:3], "m", 0.5)["held_out_fpr"] is None  # too few to cross-fit
    with pytest.raises(ValueError, match="no real images"):
        threshold_from_reals([], "m", 0.5)


@pytest.mark.parametrize(("reals", "fpr", "expected"), [
    ([0.95020795, 0.5, 0.3], 0.0, 0.9503),  # 0.9502 (rounded to the nearest) would flag the real at 0.95020795
    ([0.95020795, 0.95020799, 0.1, 0.2], 0.25, 0.95020796),  # 0.9503 would miss the one it claims: more places
    ([0.2, 0.3], 0.0, 0.3001),
])
def test_threshold_from_reals_is_a_number_that_flags_what_it_says(reals, fpr, expected):
    """The chosen threshold is printed and typed back as --threshold: as text it must flag exactly the share
    claimed, so it is rounded up, to more places only when a score lies closer above it."""
    from fakescope.evaluation.evaluate import threshold_from_reals

    out = threshold_from_reals(reals, "m", 0.5, fpr)
    typed = float(str(out["threshold"]))
    assert out["threshold"] == typed == expected
    assert np.mean(np.asarray(reals) >= typed) == out["flagged_at_threshold"] <= fpr


def test_training_threshold_holds_per_data_folder(tmp_path):
    from fakescope.config import load_config
    from fakescope.engine.threshold import shipped_threshold

    cfg = load_config(None, {"data.path": [str(tmp_path / 'a'), str(tmp_path / 'b')], "target_fpr": "0.05"})
    assert len(cfg.data.path) == 2
    rng = np.random.default_rng(2)
    p = np.concatenate([rng.uniform(0, 0.4, 100), rng.uniform(0.2, 0.9, 100), rng.uniform(0.5, 1, 50)])
    y = [0] * 200 + [1] * 50
    paths = [tmp_path / "a" / "real" / f"{i}.jpg" for i in range(100)] + \
            [tmp_path / "b" / "real" / f"{i}.jpg" for i in range(100)] + [tmp_path / "a" / "fake" / "x.jpg"] * 50
    t, held_out = shipped_threshold(cfg, y, p, paths)
    assert np.mean(p[100:200] >= t) <= 0.05 and t > shipped_threshold(cfg, y, p, None)[0]  # None: pooled (a warning)
    # the cross-fitted rate over both folders' reals (set a's, below 0.4, are never flagged)
    assert 0.0 < held_out < 0.1


def test_ece_noise_floor_shrinks_with_the_set_size():
    from fakescope.evaluation.metrics import ece_noise_floor

    p = np.random.default_rng(0).uniform(0, 1, 4000)
    small, large = ece_noise_floor(p[:200]), ece_noise_floor(p)
    assert 0.03 < small < 0.15 and large < 0.03 and large < small / 2  # noise ~ 1/sqrt(n)
    assert ece_noise_floor(p[:200]) == small  # seeded
    assert ece_noise_floor(np.full(500, 0.999)) < 0.005  # confident and right: hardly any room for noise


def test_roc_auc_interval_and_paired_difference():
    from fakescope.evaluation.metrics import paired_difference, roc_auc_interval, tpr_at_fpr

    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 150)
    good = y + rng.normal(0, 0.8, y.size)  # AUC about 0.8
    noisy = good + rng.normal(0, 0.6, y.size)  # the same evidence plus noise: a little worse
    lo, hi = roc_auc_interval(y, good, draws=300)
    assert lo < skm.roc_auc_score(y, good) < hi and 0.03 < hi - lo < 0.15
    assert roc_auc_interval(y, good, draws=300) == (lo, hi)  # seeded
    d = paired_difference(y, good, noisy, draws=300)
    assert d["difference"] == pytest.approx(skm.roc_auc_score(y, good) - skm.roc_auc_score(y, noisy))
    assert 0 < d["low"] < d["difference"] < d["high"]  # paired: the small but real gain is resolved
    same = paired_difference(y, good, good, draws=50)
    assert same == {"difference": 0.0, "low": 0.0, "high": 0.0}
    t = paired_difference(y, good, noisy, metric=tpr_at_fpr, draws=100)
    assert t["difference"] == pytest.approx(tpr_at_fpr(y, good) - tpr_at_fpr(y, noisy)) and t["low"] < t["high"]


def test_tpr_at_fpr_reads_the_roc_curve():
    from fakescope.evaluation.metrics import tpr_at_fpr

    y = np.array([0] * 20 + [1] * 10)
    p = np.concatenate([np.linspace(0, 0.5, 20), np.linspace(0.45, 1.0, 10)])  # 2 reals above the lowest fake
    assert tpr_at_fpr(y, p, 0.05) == pytest.approx(0.9) and tpr_at_fpr(y, p, 0.5) == pytest.approx(1.0)


def test_mean_difference_interval():
    from fakescope.evaluation.metrics import mean_difference

    rng = np.random.default_rng(0)
    base = rng.uniform(0.4, 0.9, 120)
    d = mean_difference(base + 0.05 + rng.normal(0, 0.05, 120), base)
    assert 0.0 < d["low"] < d["difference"] < d["high"] and d["difference"] == pytest.approx(0.05, abs=0.02)
    tie = mean_difference(base + rng.normal(0, 0.05, 120), base)
    assert tie["low"] < 0 < tie["high"]


def test_class_metrics_are_undefined_rather_than_zero_without_their_class():
    """A real-only folder (cameras) has no fake to recall: recall and F1 are None, as ROC-AUC is; precision is
    defined once something is flagged (every flag is then a false alarm) and None while nothing is."""
    none_flagged = compute_metrics([0, 0, 0], [0.1, 0.2, 0.3], threshold=0.5)
    assert none_flagged["recall"] is None and none_flagged["f1"] is None and none_flagged["precision"] is None
    one_flagged = compute_metrics([0, 0, 0], [0.1, 0.2, 0.9], threshold=0.5)
    assert one_flagged["precision"] == 0.0 and one_flagged["recall"] is None and one_flagged["roc_auc"] is None


def test_familiarity_metrics_count_unfamiliar_and_uncertain_and_rank_the_familiar_part():
    from fakescope.evaluation.metrics import MIN_FAMILIAR, familiarity_metrics

    # 12 familiar images ranked perfectly, then 4 unfamiliar ones ranked backwards: two undecided (uncertain),
    # two decisive (0.05 and 0.95 stay real and fake)
    y = [0] * 6 + [1] * 6 + [0, 0, 1, 1]
    p = [0.1] * 6 + [0.9] * 6 + [0.95, 0.6, 0.5, 0.05]
    f = [0.5] * 12 + [0.01] * 4
    m = familiarity_metrics(y, p, f, threshold=0.7)
    assert m["unfamiliar"] == 0.25
    assert m["uncertain_real"] == 1 / 8 and m["uncertain_fake"] == 1 / 8
    assert m["roc_auc_familiar"] == 1.0  # all images together rank worse
    assert compute_metrics(y, p)["roc_auc"] < 1.0
    few = familiarity_metrics(y, p, [0.01] * (len(y) - MIN_FAMILIAR + 1) + [0.5] * (MIN_FAMILIAR - 1), 0.7)
    assert few["roc_auc_familiar"] is None and few["unfamiliar"] > 0


def test_familiarity_metrics_are_none_without_a_description():
    from fakescope.evaluation.metrics import familiarity_metrics

    assert set(familiarity_metrics([0, 1], [0.2, 0.8], [None, None], 0.5).values()) == {None}
