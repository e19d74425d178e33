"""The ready params sets in configs/: each is a complete params.yaml that the stages accept as it is.

A typo (a misspelt key, a value out of range, a missing section) fails here, not hours into a GPU run.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from fixtures import make_cityscapes_fixture, make_voc_fixture
from pipeline_lib.data.prepared import read_split
from pipeline_lib.data.splits import labeled_size
from pipeline_lib.evaluation.metrics import tail_classes_from_shares
from pipeline_lib.models.build import ARCHITECTURES, build_model
from pipeline_lib.predict.inference import resolve_sliding
from pipeline_lib.pseudo_label.rules import METHODS
from pipeline_lib.settings import (
    BASELINE_ROUND,
    ConfidenceSettings,
    InferenceSettings,
    Params,
    TrainSettings,
    fraction,
    one_of,
    positive,
    round_schedule,
)
from pipeline_lib.train.augmentation import scale_range
from pipeline_project import REPO

CONFIGS = sorted((REPO / "configs").glob("*.yaml"))
PAPER_SETS = ("cityscapes_1-8_pspnet50_crop361", "cityscapes_1-8_deeplabv2", "voc_1464_pspnet50")


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def key_structure(params: dict) -> dict:
    """Nested key names; under ``rounds`` one entry for the keys every round has (names vary)."""
    def keys(node):
        return {k: keys(v) for k, v in node.items()} if isinstance(node, dict) else None

    structure = keys({k: v for k, v in params.items() if k != "rounds"})
    round_keys = {frozenset(entry) for entry in params.get("rounds", {}).values()}
    structure["rounds"] = sorted(sorted(k) for k in round_keys)
    return structure


def test_the_paper_sets_exist():
    assert {path.stem for path in CONFIGS} >= set(PAPER_SETS)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_same_keys_as_params_yaml(config):
    assert key_structure(load(config)) == key_structure(load(REPO / "params.yaml"))


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_every_stage_reads_it(config):
    p = Params.load(config)
    # train (every round), infer and evaluate (inference.*), pseudo-label, evaluate: their own readers.
    assert list(round_schedule(p)) and [BASELINE_ROUND, *round_schedule(p)][0] == BASELINE_ROUND
    for round_name in [BASELINE_ROUND, *round_schedule(p)]:
        TrainSettings.from_params(p, round_name)
    settings = InferenceSettings.from_params(p)
    if settings.mode == "sliding":
        resolve_sliding(settings.crop_size, settings.stride, 8)
    p.get("inference.images_per_shard", int, positive)
    p.get("pseudo_label.method", str, one_of(*METHODS))
    p.get("pseudo_label.temperature_scaling", bool)
    p.get("pseudo_label.seed", int)
    ConfidenceSettings.from_params(p)
    p.get("self_training.pseudo_fraction", float)
    explicit = p.raw("evaluate.tail_classes", None)
    names = [f"class{i}" for i in range(19)]
    tail_classes_from_shares(np.full(19, 1 / 19), p.get("evaluate.tail_share_threshold", float, fraction),
                             explicit if explicit is None or isinstance(explicit, list) else [explicit], names)
    arch = p.get("model.arch", str)
    assert arch in ARCHITECTURES
    p.get("model.pretrained_backbone", str, default=None)  # a path on the GPU machine, not here
    with torch.device("meta"):  # the architecture builds (no memory used)
        build_model(arch, 19)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_prepare_accepts_its_data_section(config, tmp_path):
    """The real prepare stage on a tiny tree of the config's dataset, with only data.root replaced."""
    from stages.prepare import prepare

    params = load(config)
    dataset = params["data"]["dataset"]
    if dataset == "cityscapes":
        params["data"]["root"] = str(make_cityscapes_fixture(tmp_path / "cityscapes"))
    elif dataset == "voc":
        params["data"]["root"] = str(make_voc_fixture(tmp_path / "VOC2012"))
    else:
        pytest.skip(f"no fixture for dataset {dataset!r}")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    prepare(params=tmp_path / "params.yaml", out=tmp_path / "prepared")
    assert all(read_split(tmp_path / "prepared", split) for split in ("labeled", "unlabeled", "val"))


def by_name(stem: str) -> Params:
    return Params.load(REPO / "configs" / f"{stem}.yaml")


def log_overlap(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Intersection over union of two scale ranges on a log scale."""
    (a0, a1), (b0, b1) = [(math.log(x), math.log(y)) for x, y in (a, b)]
    return max(0.0, min(a1, b1) - max(a0, b0)) / (max(a1, b1) - min(a0, b0))


@pytest.mark.parametrize("stem,arch,base_lr,aux_weight,alphas", [
    ("cityscapes_1-8_pspnet50_crop361", "pspnet_resnet50", 0.01, 0.4, (0.2, 0.5)),
    ("cityscapes_1-8_deeplabv2", "deeplabv2_resnet101", 0.002, 0.0, (0.2, 0.45)),
])
def test_cityscapes_sets_hold_the_paper_values(stem, arch, base_lr, aux_weight, alphas):
    p = by_name(stem)
    assert p.get("model.arch", str) == arch and p.get("data.dataset", str) == "cityscapes"
    unlabeled = 2975 - labeled_size(2975, p.get("data.labeled_fraction", float), None)
    assert unlabeled == 2603
    baseline, rounds = TrainSettings.from_params(p, "r0"), [TrainSettings.from_params(p, r) for r in ("r1", "r2")]
    assert baseline.batch_split(False) == (16, 0) and all(c.batch_split(True) == (8, 8) for c in rounds)
    assert baseline.iterations == 200 * (unlabeled // 16)  # round 0: 200 epochs at 16 images a step
    assert all(c.iterations == 200 * (unlabeled // 8) for c in rounds)  # 200 epochs of the pseudo-labelled half
    assert (baseline.crop_size, baseline.base_lr, baseline.aux_weight, baseline.poly_power) == \
        (361, base_lr, aux_weight, 0.9)
    assert tuple(s.labeling_ratio for s in round_schedule(p).values()) == alphas
    assert all(s.init == "teacher" for s in round_schedule(p).values())
    assert InferenceSettings.from_params(p) == InferenceSettings("sliding", 361, None, True)
    assert p.get("pseudo_label.method", str) == "dars" and not p.get("pseudo_label.temperature_scaling", bool)


@pytest.mark.parametrize("stem", ["cityscapes_1-8_pspnet50_crop361", "cityscapes_1-8_deeplabv2"])
def test_cityscapes_beta_is_the_best_fit_to_the_paper_scale_ranges(stem):
    """β gives scale_range(β); the sets use the β whose range overlaps the paper's most (see their header)."""
    p = by_name(stem)
    grid = np.arange(0.25, 3.01, 0.25)
    for beta, paper_range in ((TrainSettings.from_params(p, "r0").labeled_aug_strength, (0.25, 1.0)),
                              (TrainSettings.from_params(p, "r1").pseudo_aug_strength, (0.25, 1.0)),
                              (TrainSettings.from_params(p, "r2").pseudo_aug_strength,
                               (0.25, 1.0) if "deeplabv2" in stem else (0.2, 1.5))):
        best = max(log_overlap(scale_range(b), paper_range) for b in grid)
        assert log_overlap(scale_range(beta), paper_range) == pytest.approx(best)


def test_voc_set_holds_the_authors_values():
    p = by_name("voc_1464_pspnet50")
    assert p.get("data.dataset", str) == "voc"
    # Neither a fraction nor a count: the 1,464 train.txt images are the labelled split.
    assert p.get("data.labeled_fraction", float, default=None) is None
    assert p.get("data.labeled_count", int, default=None) is None
    config = TrainSettings.from_params(p, "r1")
    assert (config.crop_size, config.batch_split(True)) == (321, (8, 8))
    assert config.iterations == 50 * ((10582 - 1464) // 8)
    assert scale_range(config.labeled_aug_strength) == scale_range(config.pseudo_aug_strength) == (0.5, 1.5)
    assert InferenceSettings.from_params(p) == InferenceSettings("sliding", 321, None, True)
    # The authors' gen_pseudo_label configs for VOC 1,464: α = 0.4 in round 1, 0.5 in round 2.
    assert [p.get(f"rounds.{r}.labeling_ratio", float) for r in ("r1", "r2")] == [0.4, 0.5]
