"""params.yaml reading: checked values, round schedules, clear messages."""

from __future__ import annotations

import pytest
import yaml

from pipeline_lib.errors import UserError
from pipeline_lib.params import Params, fraction, positive
from pipeline_lib.settings import InferenceSettings, TrainSettings, round_schedule
from pipeline_lib.augmentation_recipe import AugmentationSettings
from pipeline_project import REPO


def default_params() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


def test_default_params_are_valid():
    params = Params(default_params())
    assert list(round_schedule(params)) == ["r1", "r2"]
    for round_name in ("r0", "r1", "r2"):
        TrainSettings.from_params(params, round_name)
    InferenceSettings.from_params(params)


def test_round_config_uses_the_round_augmentation():
    params = Params(default_params())
    assert TrainSettings.from_params(params, "r0").pseudo_fraction == 0.0
    r1, r2 = (TrainSettings.from_params(params, name) for name in ("r1", "r2"))
    labelled = AugmentationSettings.parse(params.raw("train.augmentation"))
    assert r1.labeled_augmentation == r1.pseudo_augmentation == r2.labeled_augmentation == labelled
    assert r2.pseudo_augmentation == AugmentationSettings.parse(params.raw("rounds.r2.augmentation.pseudo"))


@pytest.mark.parametrize("key, value, message", [
    ("train.base_lr", -0.1, "'train.base_lr' must be > 0, got -0.1"),
    ("train.base_lr", "fast", "'train.base_lr' must be a float, got 'fast'"),
    ("train.iterations", 2.5, "'train.iterations' must be a int, got 2.5"),
    ("train.precision", "fp8", "'train.precision' must be one of auto, fp32, bf16, fp16, got 'fp8'"),
    ("train.autocast", True, "'train.autocast' was replaced by train.precision; write `precision: auto`, got True"),
    ("train.autocast", False, "'train.autocast' was replaced by train.precision; write `precision: fp32`, got False"),
])
def test_bad_values_name_key_and_value(key, value, message):
    data = default_params()
    section, name = key.split(".")
    data[section][name] = value
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        TrainSettings.from_params(Params(data), "r0")


def test_pseudo_fraction_zero_is_the_labelled_only_control():
    data = default_params()
    data["self_training"]["pseudo_fraction"] = 0
    assert TrainSettings.from_params(Params(data), "r1").pseudo_fraction == 0.0
    data["self_training"]["pseudo_fraction"] = 1.0
    with pytest.raises(UserError, match=r"'self_training.pseudo_fraction' must be in \[0, 1\), got 1.0"):
        TrainSettings.from_params(Params(data), "r1")


def test_round_errors():
    data = default_params()
    data["rounds"]["r2"]["teacher"] = "r5"
    with pytest.raises(UserError, match="'rounds.r2.teacher' is 'r5'"):
        round_schedule(Params(data))
    data = default_params()
    data["rounds"]["r1"]["labeling_ratio"] = 1.5
    with pytest.raises(UserError, match=r"'rounds.r1.labeling_ratio' must be in \(0, 1\], got 1.5"):
        round_schedule(Params(data))
    with pytest.raises(UserError, match="unknown round 'r9'; params.yaml defines r0, r1, r2"):
        TrainSettings.from_params(Params(default_params()), "r9")


def test_missing_key_and_file(tmp_path):
    with pytest.raises(UserError, match="missing key 'train.base_lr'"):
        Params({"train": {}}).get("train.base_lr", float, positive)
    with pytest.raises(UserError, match="parameter file not found"):
        Params.load(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(UserError, match=r"bad.yaml:\d+:\d+: not valid YAML"):
        Params.load(bad)


def test_optional_values():
    params = Params({"a": {"b": None}})
    assert params.get("a.b", float, fraction, default=None) is None
    assert params.get("a.c", int, default=None) is None


def test_zero_pseudo_fraction_is_the_control_even_where_a_round_sets_its_own():
    data = default_params()
    data["rounds"]["r1"]["pseudo_fraction"] = 0.25
    assert TrainSettings.from_params(Params(data), "r1").pseudo_fraction == 0.25
    data["self_training"]["pseudo_fraction"] = 0  # what `dars ablation` sets for the control
    assert TrainSettings.from_params(Params(data), "r1").pseudo_fraction == 0.0
