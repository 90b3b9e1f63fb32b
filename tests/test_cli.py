"""The command line contract: scan output formats and resume, models, evaluate, and clean errors."""
from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import pytest
from conftest import make_image
from PIL import Image
from typer.testing import CliRunner

from fakescope.cli import app
from fakescope.forensics.io import load_image
from fakescope.inference.detector import Detector
from fakescope.inference.output import unwritable_reason
from fakescope.registry import list_detectors

RESULT_KEYS = {"path", "fake_probability", "label", "threshold", "model", "error", "provenance", "familiarity"}
CSV_KEYS = RESULT_KEYS - {"provenance"} | {"provenance_verdict", "provenance_generator", "label_reason", "copy_move"}
METRIC_KEYS = {"n", "accuracy", "precision", "recall", "f1", "roc_auc", "average_precision", "eer", "confusion_matrix"}

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def images(tiny_images) -> list[Path]:
    return tiny_images(3, "imgs", "jpg") + tiny_images(2, "imgs", "png", prefix="p", seed=1)


def scan_args(ckpt: Path, folder: Path, *extra: str) -> list[str]:
    return ["scan", str(folder), "--model", str(ckpt), *extra]


def test_scan_json_contract(images, tiny_ela_checkpoint):
    res = invoke(*scan_args(tiny_ela_checkpoint, images[0].parent, "--format", "json"))
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)  # the whole of stdout is one JSON document
    assert isinstance(rows, list) and len(rows) == 5
    assert {r["path"] for r in rows} == {str(p) for p in images}
    for r in rows:
        assert set(r) == RESULT_KEYS
        assert 0.0 <= r["fake_probability"] <= 1.0
        assert r["label"] in ("real", "fake") and r["error"] is None
        assert r["model"] == str(tiny_ela_checkpoint)
        assert r["label"] == ("fake" if r["fake_probability"] >= 0.5 else "real")


def test_scan_probabilities_match_the_detector(images, tiny_ela_checkpoint):
    res = invoke(*scan_args(tiny_ela_checkpoint, images[0], "--format", "json"))
    (row,) = json.loads(res.stdout)
    expected = Detector.load(str(tiny_ela_checkpoint), device="cpu").predict_images([load_image(images[0])])[0]
    assert row["fake_probability"] == pytest.approx(float(expected), abs=1e-5)


def test_scan_jsonl(images, tiny_ela_checkpoint):
    res = invoke(*scan_args(tiny_ela_checkpoint, images[0].parent, "--format", "jsonl"))
    assert res.exit_code == 0
    lines = res.stdout.strip().splitlines()
    assert len(lines) == 5 and all(set(json.loads(line)) == RESULT_KEYS for line in lines)


def test_scan_csv(images, tiny_ela_checkpoint):
    res = invoke(*scan_args(tiny_ela_checkpoint, images[0].parent, "--format", "csv"))
    assert res.exit_code == 0
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    assert len(rows) == 5 and set(rows[0]) == CSV_KEYS | {"path_bytes"}  # path_bytes empty unless a name is not UTF-8
    assert all(0.0 <= float(r["fake_probability"]) <= 1.0 and r["error"] == "" for r in rows)


def test_scan_csv_cells_never_start_a_formula(tmp_path, tiny_ela_checkpoint, monkeypatch):
    """A file name or an EXIF Software tag that a spreadsheet would run as a formula gets a leading quote."""
    names = ['=HYPERLINK("http:__evil").jpg', "@SUM(1+1).jpg", "+1.jpg", "-1.jpg", "\tx.jpg", "plain.jpg"]
    for name in names:
        make_image().save(tmp_path / name, quality=90)
    exif = Image.Exif()
    exif[0x0131] = '=HYPERLINK("http://evil","x")'  # Software
    make_image(seed=1).save(tmp_path / "software.jpg", quality=90, exif=exif)
    monkeypatch.chdir(tmp_path)  # `scan *.jpg`: the names alone are the paths
    res = invoke("scan", "--model", tiny_ela_checkpoint, "--format", "csv", "--", *names, "software.jpg")
    assert res.exit_code == 0, res.output
    rows = {r["path"]: r for r in csv.DictReader(io.StringIO(res.stdout))}
    assert set(rows) == {f"'{n}" for n in names[:-1]} | {"plain.jpg", "software.jpg"}
    assert rows["software.jpg"]["provenance_generator"] == '\'=HYPERLINK("http://evil","x")'
    assert all(r["error"] == "" and 0.0 <= float(r["fake_probability"]) <= 1.0 for r in rows.values())  # numbers


def test_scan_table(images, tiny_ela_checkpoint):
    res = invoke(*scan_args(tiny_ela_checkpoint, images[0].parent))
    assert res.exit_code == 0
    assert "5 files:" in res.stdout and "0 errors" in res.stdout
    assert images[0].name in res.stdout


@pytest.mark.parametrize("fmt", ["json", "jsonl", "csv"])
def test_scan_output_file(images, tiny_ela_checkpoint, tmp_path, fmt):
    out = tmp_path / "out" / f"results.{fmt}"
    res = invoke(*scan_args(tiny_ela_checkpoint, images[0].parent, "--format", fmt, "--output", out))
    assert res.exit_code == 0, res.output
    text = out.read_text()
    n = {"json": lambda: len(json.loads(text)), "jsonl": lambda: len(text.strip().splitlines()),
         "csv": lambda: len(list(csv.DictReader(io.StringIO(text))))}[fmt]()
    assert n == 5
    assert "5 files:" in res.stdout and str(out) in res.stdout.replace("\n", "")


def test_scan_to_a_file_streams_and_shows_only_the_first_rows(images, tiny_ela_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setattr("fakescope.cli.scan.TABLE_ROWS", 2)
    out = tmp_path / "results.csv"
    res = invoke(*scan_args(tiny_ela_checkpoint, images[0].parent, "--format", "csv", "--output", out))
    assert res.exit_code == 0, res.output
    assert len(list(csv.DictReader(io.StringIO(out.read_text())))) == 5  # every result in the file
    assert "5 files:" in res.stdout and "(the first 2 results; all are in" in res.stdout
    bad = invoke(*scan_args(tiny_ela_checkpoint, images[0].parent, "--output", tmp_path / "r.txt"))
    assert bad.exit_code == 2 and "--output needs --format" in bad.output


def usage_error(res) -> str:
    """The one-line message of a usage error, unwrapped from its box."""
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    return " ".join(res.output.replace("│", " ").split())


def test_output_and_report_never_overwrite_a_scanned_file(images, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = {p: p.read_bytes() for p in images}
    cases = [["imgs", "--format", "csv", "--output", "imgs/img000.jpg"],  # a file the folder's walk reads
             ["imgs/p000.png", "--report", "imgs/p000.png"],  # the named file itself
             ["imgs", "imgs/img001.jpg", "--report", "./imgs/../imgs/img001.jpg"]]
    for args in cases:  # refused before the model is loaded: an unknown model would exit with 1
        said = usage_error(invoke("scan", *args, "--model", "no-such-model"))
        assert f"{args[-1].removeprefix('./')} is one of the files this scan reads" in said
    said = usage_error(invoke("scan", "imgs", "--format", "json", "--output", "r.json", "--report", "r.json"))
    assert "--output and --report are both r.json" in said
    assert {p: p.read_bytes() for p in images} == before
    assert not Path("r.json").exists()


def test_output_and_report_that_cannot_be_written_are_refused_before_scanning(images, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "taken").write_text("a file")
    cases = [("--output", "imgs", "is a folder"), ("--report", "imgs", "is a folder"),
             ("--output", "taken/r.json", "taken is not a folder"),
             ("--report", "taken/sub/r.html", "taken is not a folder")]
    if Path("/proc/self").is_dir():  # Linux: no file can be made in /proc, not even by root
        cases += [("--output", "/proc/nope.json", "cannot write in /proc"),
                  ("--report", "/proc/nope/x.html", "cannot create the folder /proc/nope")]
    for option, path, reason in cases:
        said = usage_error(invoke("scan", "imgs", "--format", "json", option, path, "--model", "no-such-model"))
        assert f"Invalid value for {option}: {path}: {reason}" in said
    assert sorted(p.name for p in tmp_path.iterdir()) == ["imgs", "taken"]  # no imgs.part, nothing made
    assert unwritable_reason(os.devnull) is None  # a device (/dev/stdout too) is written in place


def test_output_in_a_new_folder_inside_the_scanned_one_is_made(images, tiny_ela_checkpoint, tmp_path):
    out = tmp_path / "imgs" / "results" / "scan.csv"
    res = invoke(*scan_args(tiny_ela_checkpoint, images[0].parent, "--format", "csv", "--output", out))
    assert res.exit_code == 0, res.output
    assert len(list(csv.DictReader(io.StringIO(out.read_text())))) == 5


def test_interrupted_json_scan_leaves_a_valid_file(images, tiny_ela_checkpoint, tmp_path, monkeypatch):
    from fakescope.inference import scan as scan_mod

    real_scan = scan_mod.scan

    def two_then_ctrl_c(*args, **kwargs):
        for i, r in enumerate(real_scan(*args, **kwargs)):
            if i == 2:
                raise KeyboardInterrupt
            yield r

    monkeypatch.setattr(scan_mod, "scan", two_then_ctrl_c)
    out = tmp_path / "results.json"
    res = invoke(*scan_args(tiny_ela_checkpoint, images[0].parent, "--format", "json", "--output", out))
    assert res.exit_code == 130 and "interrupted after 2 files" in res.output
    rows = json.loads(out.read_text())  # the list was closed
    assert len(rows) == 2 and set(rows[0]) == RESULT_KEYS


def test_threshold_changes_labels(images, tiny_ela_checkpoint):
    def labels(t: str) -> set[str]:
        res = invoke(*scan_args(tiny_ela_checkpoint, images[0].parent, "--format", "json", "--threshold", t))
        return {r["label"] for r in json.loads(res.stdout)}

    assert labels("0") == {"fake"}
    assert labels("1") == {"real"}


def test_the_table_names_the_threshold_that_labelled_it(images, tiny_ela_checkpoint):
    from fakescope.inference.detector import Detector

    own = Detector.load(tiny_ela_checkpoint).threshold
    for extra, shown in (([], own), (["--threshold", "0.25"], 0.25)):
        res = invoke(*scan_args(tiny_ela_checkpoint, images[0].parent, *extra))
        assert res.exit_code == 0, res.output
        assert f"fake at probability >= {shown:.3f}" in res.output


def _rows(text: str, fmt: str) -> list[dict]:
    """Rows of a scan's output, numbers and nulls as JSON has them (CSV: empty cells are null)."""
    if fmt == "json":
        return json.loads(text)
    if fmt == "jsonl":
        return [json.loads(line) for line in text.splitlines()]
    rows = list(csv.DictReader(io.StringIO(text)))
    return [{**r, **{k: None if r[k] == "" else float(r[k]) for k in ("fake_probability", "threshold")},
             "label": r["label"] or None} for r in rows]


@pytest.mark.parametrize("fmt", ["json", "jsonl", "csv"])
def test_every_row_records_the_threshold_that_labelled_it(images, tiny_ela_checkpoint, fmt):
    """A results file says how it was labelled: each scored row has the threshold its label used (the model's own,
    or --threshold), an error row null, as its probability and label are."""
    (images[0].parent / "broken.jpg").write_bytes(b"not an image")
    own = Detector.load(tiny_ela_checkpoint).threshold
    for extra, used in (([], own), (["--threshold", "0.25"], 0.25)):
        res = invoke(*scan_args(tiny_ela_checkpoint, images[0].parent, "--format", fmt, *extra))
        assert res.exit_code == 0, res.output
        rows = {Path(r["path"]).name: r for r in _rows(res.stdout, fmt)}
        broken = rows.pop("broken.jpg")
        assert broken["error"] and broken["threshold"] is None and broken["label"] is None
        assert len(rows) == 5 and all(r["threshold"] == used for r in rows.values())
        assert all(r["label"] == ("fake" if r["fake_probability"] >= used else "real") for r in rows.values())


@pytest.mark.parametrize("command", [["scan", "x.jpg"], ["evaluate", "--data", "x"], ["robustness", "--data", "x"]])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1.5", "-0.1"])
def test_a_threshold_that_is_not_a_probability_is_refused_naming_the_option(command, value):
    res = invoke(*command, "--threshold", value)
    assert res.exit_code == 2, res.output
    assert f"Invalid value for '--threshold': {value} is not a probability from 0 to 1" in res.output


def test_resume_skips_finished_files_and_appends(images, tiny_ela_checkpoint, tmp_path):
    out = tmp_path / "results.jsonl"
    full = invoke(*scan_args(tiny_ela_checkpoint, images[0].parent, "--format", "jsonl"))
    done = full.stdout.strip().splitlines()[:2]
    torn = done[1][: len(done[1]) // 2]
    out.write_text(done[0] + "\n" + torn)  # a crash while writing the second result
    res = invoke(*scan_args(tiny_ela_checkpoint, images[0].parent, "--format", "jsonl", "--output", out, "--resume"))
    assert res.exit_code == 0, res.output
    assert "resuming: 1 files already scored" in res.stderr
    lines = out.read_text().splitlines()
    assert lines[0] == done[0]
    rows = [json.loads(line) for line in lines]  # every line parses: the torn one is gone
    paths = [r["path"] for r in rows]
    assert len(paths) == len(set(paths)) == 5 and set(paths) == {str(p) for p in images}
    again = invoke(*scan_args(tiny_ela_checkpoint, images[0].parent, "--format", "jsonl", "--output", out, "--resume"))
    assert again.exit_code == 0 and out.read_text().splitlines() == lines  # nothing left to do


def test_resume_needs_jsonl_output(images, tiny_ela_checkpoint, tmp_path):
    res = invoke(*scan_args(tiny_ela_checkpoint, images[0].parent, "--format", "json", "--output",
                            tmp_path / "r.json", "--resume"))
    assert res.exit_code == 2 and "--resume" in res.output


def test_models_json_lists_every_detector():
    res = invoke("models", "--format", "json")
    assert res.exit_code == 0
    rows = json.loads(res.stdout)
    assert [r["name"] for r in rows] == list_detectors()
    for r in rows:
        assert {"name", "params", "input_size", "shipped"} <= set(r)
        assert isinstance(r["params"], int) and r["params"] > 0
        assert isinstance(r["input_size"], int) and isinstance(r["shipped"], bool)
    assert next(r for r in rows if r["name"] == "ela-cnn")["params"] == 7_392_962
    assert invoke("models").exit_code == 0


def test_models_shows_the_input_the_shipped_weights_were_trained_on():
    from fakescope.checkpoint import read_meta
    from fakescope.inference.detector import shipped_weights

    rows = json.loads(invoke("models", "--format", "json").stdout)
    shipped = [r for r in rows if r["shipped"]]
    assert shipped, "no detector ships weights"
    for r in shipped:
        pre = read_meta(shipped_weights(r["name"])).preprocess
        assert (r["input_size"], r["input_mode"]) == (pre.size, pre.input_mode), r["name"]


def test_evaluate_json(tiny_images, tiny_ela_checkpoint, tmp_path):
    tiny_images(3, "data/real", seed=1)
    tiny_images(3, "data/fake", "png", seed=2)
    out = tmp_path / "metrics.json"
    res = invoke("evaluate", "--data", tmp_path / "data", "--model", tiny_ela_checkpoint, "--format", "json",
                 "--output", out)
    assert res.exit_code == 0, res.output
    m = json.loads(res.stdout)
    assert METRIC_KEYS <= set(m)
    assert m["n"] == 6 and sum(map(sum, m["confusion_matrix"])) == 6
    assert 0.0 <= m["accuracy"] <= 1.0 and 0.0 <= m["roc_auc"] <= 1.0
    assert json.loads(out.read_text()) == m


def test_evaluate_folder_without_layout_fails_cleanly(tiny_images, tiny_ela_checkpoint, tmp_path):
    tiny_images(2, "flat")
    res = invoke("evaluate", "--data", tmp_path / "flat", "--model", tiny_ela_checkpoint, "--format", "json")
    assert res.exit_code == 1 and "no labelled images" in res.stderr and "Traceback" not in res.output


@pytest.mark.parametrize("command", ["scan", "evaluate"])
def test_unknown_model_is_a_one_line_error(images, tiny_images, tmp_path, command):
    tiny_images(1, "data/real")
    where = ["--data", tmp_path / "data"] if command == "evaluate" else [images[0]]
    res = invoke(command, *where, "--model", "no-such-model")
    assert res.exit_code == 1
    assert "Traceback" not in res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "no-such-model" in lines[0] and lines[0].startswith("error:")


def test_bad_checkpoint_is_a_one_line_error(images, tmp_path):
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"not a checkpoint")
    res = invoke("scan", images[0], "--model", bad)
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert len(res.stderr.strip().splitlines()) == 1 and "broken.safetensors" in res.stderr


@pytest.mark.parametrize("args", [["--format", "xml"], ["--threshold", "1.5"]])
def test_bad_options_are_usage_errors(images, tiny_ela_checkpoint, args):
    res = invoke(*scan_args(tiny_ela_checkpoint, images[0], *args))
    assert res.exit_code == 2 and "Usage" in res.output


def test_threshold_on_known_reals_flags_at_most_the_share_asked(tiny_images, tiny_ela_checkpoint, tmp_path):
    reals = tiny_images(10, "reals", seed=3)
    (tmp_path / "reals" / "broken.jpg").write_bytes(b"not a jpeg")
    res = invoke("threshold", tmp_path / "reals", "--model", tiny_ela_checkpoint, "--fpr", "0.2", "--format", "json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["n"] == 10 and out["n_errors"] == 1 and "broken.jpg" in out["errors"][0]
    assert "broken.jpg" in res.stderr  # reported, not fatal
    assert "10 reals is rough" in out["warning"] and "10 reals is rough" in res.stderr
    assert out["flagged_at_threshold"] <= 0.2 and 0.0 <= out["held_out_fpr"] <= 1.0
    # scan at that threshold labels exactly the share the command reported, and the lowest such threshold
    rows = json.loads(invoke(*scan_args(tiny_ela_checkpoint, tmp_path / "reals", "--format", "json", "--threshold",
                                        str(out["threshold"]))).stdout)
    probs = sorted(r["fake_probability"] for r in rows if r["error"] is None)
    assert sum(r["label"] == "fake" for r in rows) == round(out["flagged_at_threshold"] * 10) <= 2
    assert out["threshold"] > probs[-3]  # 2 of 10 may score at or above it, not 3
    assert len(reals) == len(probs)
    table = invoke("threshold", tmp_path / "reals", "--model", tiny_ela_checkpoint, "--fpr", "0.2")
    assert f"--threshold {out['threshold']}\n" in table.stdout  # the very value checked above, not a rounding


def test_threshold_without_images_is_a_one_line_error(tiny_ela_checkpoint, tmp_path):
    (tmp_path / "empty").mkdir()
    res = invoke("threshold", tmp_path / "empty", "--model", tiny_ela_checkpoint)
    assert res.exit_code == 1 and "no readable images" in res.stderr and "Traceback" not in res.output


def test_evaluate_bad_format_is_usage_error(tmp_path, tiny_ela_checkpoint):
    res = invoke("evaluate", "--data", tmp_path, "--model", tiny_ela_checkpoint, "--format", "csv")
    assert res.exit_code == 2


def test_tables_written_to_a_file_or_pipe_are_not_folded_at_80_columns(monkeypatch):
    """Rich assumes 80 columns when it cannot ask a terminal: a scan table redirected to a file folded file names
    mid-word and cut its headers ("probabil…"). Piped, the consoles are PIPED_WIDTH wide unless COLUMNS says."""
    import io

    from fakescope.cli import _util

    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.setattr("sys.stdout", io.StringIO())
    assert _util._console().width == _util.PIPED_WIDTH
    monkeypatch.setenv("COLUMNS", "90")
    assert _util._console().width == 90


def test_evaluate_checks_every_folder_before_scoring_any(tiny_images, tiny_ela_checkpoint, tmp_path, monkeypatch):
    """A folder without labels, given last, fails at once instead of after the others were scored."""
    import fakescope.evaluation.evaluate as evaluation

    tiny_images(2, "data/real", seed=1)
    tiny_images(2, "data/fake", seed=2)
    tiny_images(2, "flat")
    monkeypatch.setattr(evaluation, "evaluate_detector", lambda *a, **k: pytest.fail("scored before the check"))
    res = invoke("evaluate", "--data", tmp_path / "data", "--data", tmp_path / "flat", "--model", tiny_ela_checkpoint)
    assert res.exit_code == 1 and "flat: no labelled images" in res.stderr


def test_evaluate_of_a_detector_without_description_has_no_familiarity(tiny_images, tiny_ela_checkpoint, tmp_path):
    tiny_images(2, "data/real", seed=1)
    tiny_images(2, "data/fake", seed=2)
    res = invoke("evaluate", "--data", tmp_path / "data", "--model", tiny_ela_checkpoint, "--format", "json")
    assert res.exit_code == 0, res.output
    assert {json.loads(res.stdout)[k] for k in ("unfamiliar", "uncertain_real", "roc_auc_familiar")} == {None}
    assert "unfamiliar" not in invoke("evaluate", "--data", tmp_path / "data", "--model", tiny_ela_checkpoint).stdout
