"""Training configuration: defaults, then YAML, then dotted overrides; unknown keys fail; the result is saved."""
from __future__ import annotations

import pytest
import yaml
from conftest import REPO
from typer.testing import CliRunner

from fakescope.cli import app
from fakescope.config import (
    TrainConfig,
    apply_overrides,
    config_differences,
    flatten,
    load_config,
    parse_dotted_args,
    save_config,
    to_dict,
)


def test_parse_dotted_args_both_spellings():
    args = ["--optim.lr", "3e-4", "--augment.enabled=false", "--data.max-per-class", "24", "--model.size=none"]
    assert parse_dotted_args(args) == {"optim.lr": "3e-4", "augment.enabled": "false", "data.max_per_class": "24",
                                       "model.size": "none"}
    for bad in (["optim.lr", "1"], ["--optim.lr"]):
        with pytest.raises(ValueError):
            parse_dotted_args(bad)


def test_overrides_coerce_to_field_types():
    cfg = load_config(None, parse_dotted_args([
        "--optim.lr", "3e-4", "--augment.enabled=false", "--epochs", "3", "--data.cache", "no",
        "--optim.grad_clip", "1e-3", "--ema", "0.999", "--data.max_per_class", "24", "--model.size", "none",
        "--model.input_mode", "rgb+ela", "--data.cache_dir", "123",
    ]))
    assert cfg.optim.lr == 3e-4 and isinstance(cfg.optim.lr, float)
    assert cfg.augment.enabled is False and cfg.data.cache is False
    assert cfg.epochs == 3 and isinstance(cfg.epochs, int)
    assert cfg.optim.grad_clip == pytest.approx(1e-3) and isinstance(cfg.optim.grad_clip, float)  # float | None
    assert cfg.ema == pytest.approx(0.999)
    assert cfg.data.max_per_class == 24
    assert cfg.model.size is None and cfg.model.input_mode == "rgb+ela"
    assert cfg.data.cache_dir == "123"  # a str | None field stays a string


@pytest.mark.parametrize("text, expected", [("50,90", (50, 90)), ("(40, 95)", (40, 95)), ("[30,100]", (30, 100))])
def test_tuple_overrides(text, expected):
    cfg = load_config(None, {"augment.jpeg_quality": text, "augment.blur_sigma": "0.5, 2"})
    assert cfg.augment.jpeg_quality == expected and all(isinstance(v, int) for v in cfg.augment.jpeg_quality)
    assert cfg.augment.blur_sigma == (0.5, 2.0)


def test_list_overrides():
    assert load_config(None, {"data.path": "some/folder"}).data.path == ["some/folder"]
    assert load_config(None, {"data.path": "[a, b/c]"}).data.path == ["a", "b/c"]
    assert load_config(None, {"data.path": ["x", "y"]}).data.path == ["x", "y"]


def test_none_for_optional_fields_and_any():
    cfg = load_config(None, {"optim.grad_clip": "None", "resume": "null", "model.pretrained": "true"})
    assert cfg.optim.grad_clip is None and cfg.resume is None and cfg.model.pretrained is True
    assert load_config(None, {"optim.grad_clip": "2", "model.size": None}).model.size is None  # YAML null
    assert load_config(None, {"model.pretrained": "weights/in1k.pth"}).model.pretrained == "weights/in1k.pth"


@pytest.mark.parametrize("key, value", [("optim.lrr", "1"), ("nosuch.lr", "1"), ("optim.lr.x", "1"), ("foo", "1")])
def test_unknown_keys_raise(key, value):
    with pytest.raises(KeyError, match="unknown config key"):
        load_config(None, {key: value})


@pytest.mark.parametrize("key, value", [("optim.lr", "fast"), ("augment.enabled", "maybe"), ("optim", "3")])
def test_bad_values_raise(key, value):
    with pytest.raises(ValueError):
        load_config(None, {key: value})


def test_yaml_then_overrides(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("model:\n  name: resnet18\n  size: 64\noptim:\n  lr: 1e-3\n  grad_clip: 2e-1\n"
                      "augment:\n  jpeg_quality: [40, 90]\nepochs: 7\ndata:\n  path: [a, b]\n")
    cfg = load_config(recipe, {"optim.lr": "5e-4"})
    assert cfg.model.name == "resnet18" and cfg.model.size == 64 and cfg.epochs == 7
    assert cfg.optim.lr == 5e-4  # the override wins over the file
    assert cfg.optim.grad_clip == pytest.approx(0.2)  # YAML reads "2e-1" as a string: coerced
    assert cfg.augment.jpeg_quality == (40, 90) and cfg.data.path == ["a", "b"]
    assert cfg.batch_size == TrainConfig().batch_size  # untouched defaults stay


def test_yaml_unknown_key_and_non_mapping_raise(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim:\n  learning_rate: 1e-3\n")
    with pytest.raises(KeyError, match="optim.learning_rate"):
        load_config(bad)
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ValueError, match="mapping"):
        load_config(bad)


def test_resolved_config_saved_and_reloaded(tmp_path):
    cfg = apply_overrides(TrainConfig(), {"optim.lr": "2e-4", "augment.jpeg_quality": "50,90",
                                          "data.path": ["d1", "d2"], "optim.grad_clip": "1.5"})
    save_config(cfg, tmp_path / "config.yaml")
    raw = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert raw["optim"]["lr"] == 2e-4 and raw["augment"]["jpeg_quality"] == [50, 90]
    assert load_config(tmp_path / "config.yaml") == cfg
    assert to_dict(load_config(tmp_path / "config.yaml")) == to_dict(cfg)


def test_flatten_gives_the_dotted_override_keys():
    flat = flatten(to_dict(TrainConfig()))
    assert flat["optim.lr"] == TrainConfig().optim.lr and "optim" not in flat
    assert apply_overrides(TrainConfig(), flat) == TrainConfig()  # the dotted keys set the config back


def test_config_differences_name_each_differing_key_and_fill_newer_options(tmp_path):
    cfg = apply_overrides(TrainConfig(), {"optim.layer_decay": "0.85", "epochs": "3", "out": "runs/a"})
    older = to_dict(apply_overrides(TrainConfig(), {"epochs": "3", "out": "runs/b"}))
    del older["optim"]["layer_decay"]  # saved before the option existed
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(older))
    saved = load_config(tmp_path / "config.yaml")
    assert config_differences(saved, cfg) == ["optim.layer_decay: None vs 0.85"]  # where the run went is ignored
    assert saved.optim.layer_decay == TrainConfig().optim.layer_decay  # the newer option at its default
    assert config_differences(cfg, cfg) == []
    assert config_differences(saved, cfg, ignore=()) == ["optim.layer_decay: None vs 0.85", "out: 'runs/b' vs 'runs/a'"]


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "configs").glob("*.yaml")))
def test_shipped_recipes_load(name):
    """Every recipe in configs/ (the default and the candidates the docs measured) builds a valid config."""
    cfg = load_config(REPO / "configs" / name)
    assert cfg.model.name and cfg.epochs > 0


def test_train_cli_rejects_an_unknown_choice_before_training(tmp_path):
    args = ["train", "--data", str(tmp_path), "--out", str(tmp_path / "run"), "--parallel.schedule", "zigzag"]
    result = CliRunner().invoke(app, args)
    said = " ".join(result.output.replace("│", " ").split())
    assert result.exit_code == 2 and "config key parallel.schedule: 'zigzag' is not one of gpipe, 1f1b" in said
    assert not (tmp_path / "run").exists()


def test_train_cli_rejects_unknown_override_before_training(tmp_path):
    result = CliRunner().invoke(app, ["train", "--data", str(tmp_path), "--optim.lrr", "1", "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and "unknown config key" in result.output
    assert not (tmp_path / "run").exists()
    result = CliRunner().invoke(app, ["train", "--optim.lr", "1e-3"])
    assert result.exit_code == 2 and "--data is required" in result.output


@pytest.mark.parametrize(("key", "value", "allowed"), [
    ("data.balance", "sampeler", "sampler, source, weights, none"),
    ("strategy", "horovod", "none, ddp, localsgd, pipeline, tensor"),
    ("optim.schedule", "linear", "inverse, cosine, step, plateau, none"),
    ("model.resize", "stretch", "squash, crop, None"),
])
def test_a_choice_outside_its_values_fails_naming_key_and_values(key, value, allowed):
    with pytest.raises(ValueError) as err:
        load_config(None, {key: value})
    assert str(err.value) == f"config key {key}: {value!r} is not one of {allowed}"


def test_choices_none_is_a_value_where_it_is_one_and_null_where_optional():
    cfg = load_config(None, {"data.balance": "none", "strategy": "none", "model.resize": "none"})
    assert cfg.data.balance == "none" and cfg.strategy == "none" and cfg.model.resize is None


def test_config_choices_are_the_ones_the_code_implements():
    from typing import get_args

    from fakescope.config import InputMode, PatchAggregate, PipelineSchedule, Resize, Strategy
    from fakescope.data.preprocess import INPUT_MODES, RESIZE_MODES
    from fakescope.engine.parallel import STRATEGIES
    from fakescope.engine.parallel.pipeline import SCHEDULES
    from fakescope.inference.kinds.patch import AGGREGATES

    assert set(get_args(Strategy)) == set(STRATEGIES) and set(get_args(PipelineSchedule)) == set(SCHEDULES)
    assert get_args(InputMode) == INPUT_MODES and get_args(Resize) == RESIZE_MODES
    assert get_args(PatchAggregate) == AGGREGATES
