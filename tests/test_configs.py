"""The ready params sets in configs/: each is a complete params.yaml that the stages accept as it is.

A typo (a misspelt key, a value out of range, a missing section) fails here, not hours into a GPU run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from fixtures import make_camvid_fixture, make_cityscapes_fixture, make_voc_fixture
from pipeline_lib.data.classes import known_class_set
from pipeline_lib.data.prepared import read_split
from pipeline_lib.data.splits import labeled_size
from pipeline_lib.evaluation.metrics import tail_classes_from_shares
from pipeline_lib.models.build import ARCHITECTURES, build_model
from pipeline_lib.predict.inference import resolve_sliding
from pipeline_lib.pseudo_label.rules import METHODS
from pipeline_lib.params import Params, fraction, one_of, positive
from pipeline_lib.settings import BASELINE_ROUND, ConfidenceSettings, InferenceSettings, TrainSettings, round_schedule
from pipeline_lib.augmentation_recipe import AugmentationSettings
from pipeline_project import REPO

CONFIGS = sorted((REPO / "configs").glob("*.yaml"))
PAPER_SETS = ("cityscapes_1-8_pspnet50_crop361", "cityscapes_1-8_deeplabv2", "voc_1464_pspnet50", "camvid_1-8_pspnet50")


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def key_structure(params: dict) -> dict:
    """Nested key names outside ``rounds`` (whose entries may set any of ROUND_KEYS: checked by the settings)."""
    def keys(node):
        return {k: keys(v) for k, v in node.items()} if isinstance(node, dict) else None

    return keys({k: v for k, v in params.items() if k != "rounds"})


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
    classes = known_class_set(p.get("data.dataset", str))
    names = list(classes.names) if classes else [f"class{i}" for i in range(19)]
    tail_classes_from_shares(np.full(len(names), 1 / len(names)),
                             p.get("evaluate.tail_share_threshold", float, fraction), explicit if explicit is None or isinstance(explicit, list) else [explicit], names)
    arch = p.get("model.arch", str)
    assert arch in ARCHITECTURES
    p.get("model.pretrained_backbone", str, default=None)  # a path on the GPU machine, not here
    with torch.device("meta"):  # the architecture builds (no memory used)
        build_model(arch, 19)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_prepare_accepts_its_data_section(config, tmp_path):
    """The real prepare stage on a tiny tree of the config's dataset, with only data.root replaced (the embedded
    dataset: with only its image counts made tiny)."""
    from stages.prepare import prepare

    params = load(config)
    dataset = params["data"]["dataset"]
    if dataset == "cityscapes":
        params["data"]["root"] = str(make_cityscapes_fixture(tmp_path / "cityscapes"))
    elif dataset == "voc":
        params["data"]["root"] = str(make_voc_fixture(tmp_path / "VOC2012"))
    elif dataset == "camvid":
        params["data"]["root"] = str(make_camvid_fixture(tmp_path / "CamVid"))
    else:
        assert dataset == "synthetic", f"{config.name}: no test data for dataset {dataset!r}"
        params["synthetic"].update(num_train_images=16, num_val_images=4)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    prepare(params=tmp_path / "params.yaml", out=tmp_path / "prepared")
    assert all(read_split(tmp_path / "prepared", split) for split in ("labeled", "unlabeled", "val"))


def by_name(stem: str) -> Params:
    return Params.load(REPO / "configs" / f"{stem}.yaml")


AUTHORS_AUGMENTATION = "rotate 10 p0.5, blur 5x5 p0.5, flip, pad centre"  # util/transform.py, every round


def augmentation(scale: str) -> AugmentationSettings:
    return AugmentationSettings.parse(f"scale {scale}, {AUTHORS_AUGMENTATION}")


# Per config, the authors' values (see each file's comments for the source of each):
# round 0 (iterations, batch), rounds 1-2 (iterations, labelled + pseudo), scale range per round, α, base size.
AUTHORS = {
    "cityscapes_1-8_pspnet50_crop361": dict(
        arch="pspnet_resnet50_deep_stem", base_lr=0.01, aux_weight=0.4, crop=361, r0=(4600, 16), rounds=(65000, (8, 8)),
        scales=("0.25-1.0", "0.25-1.0", "0.2-1.5"), alphas=(0.2, 0.5), base_size=1024),
    "cityscapes_1-8_deeplabv2": dict(
        arch="deeplabv2_resnet101_dars", base_lr=0.002, aux_weight=0.0, crop=361, r0=(32400, 16), rounds=(130200, (4, 4)),
        scales=("0.25-1.0", "0.25-1.0", "0.2-1.5"), alphas=(0.2, 0.45), base_size=1024),
    "voc_1464_pspnet50": dict(
        arch="pspnet_resnet50_deep_stem", base_lr=0.01, aux_weight=0.4, crop=321, r0=(4550, 16), rounds=(56950, (8, 8)),
        scales=("0.5-1.5", "0.5-1.5", "0.5-2.0"), alphas=(0.4, 0.5), base_size=400),
    # Not theirs: their Cityscapes setting carried to CamVid (epochs of its 46 / 321 images, CamVid's scales).
    "camvid_1-8_pspnet50": dict(
        arch="pspnet_resnet50_deep_stem", base_lr=0.01, aux_weight=0.4, crop=361, r0=(400, 16), rounds=(8000, (8, 8)),
        scales=("0.5-2.0", "0.5-2.0", "0.4-3.0"), alphas=(0.2, 0.5), base_size=None),
}


@pytest.mark.parametrize("stem", PAPER_SETS)
def test_each_paper_set_holds_the_authors_values(stem):
    """A config cannot drift from the authors' setting silently: every value they publish, per round."""
    expected, p = AUTHORS[stem], by_name(stem)
    assert p.get("model.arch", str) == expected["arch"]
    baseline, r1, r2 = (TrainSettings.from_params(p, r) for r in ("r0", "r1", "r2"))
    assert (baseline.iterations, baseline.batch_size) == expected["r0"] and baseline.batch_split(False)[1] == 0
    assert all((c.iterations, c.batch_split(True)) == expected["rounds"] for c in (r1, r2))
    for settings in (baseline, r1, r2):
        assert (settings.crop_size, settings.aux_weight, settings.poly_power, settings.momentum,
                settings.weight_decay, settings.head_lr_multiplier) == (expected["crop"], expected["aux_weight"], 0.9,
                                                                         0.9, 0.0001, 10.0)
        assert settings.loss == "per_source"  # sup + 1.0 x pseudo, each half its own forward pass
    # Their rounds resume the teacher's optimiser on a schedule spanning the rounds: 1x, 0.536x, 0.372x.
    assert [c.base_lr for c in (baseline, r1, r2)] == pytest.approx(
        [expected["base_lr"] * f for f in (1.0, 0.5**0.9, (1 / 3) ** 0.9)])
    assert (baseline.optimizer_state, r1.optimizer_state, r2.optimizer_state) == ("fresh", "teacher", "teacher")
    # The same augmentation for both sources, per round; no colour jitter, rotation ±10° at p 0.5, 5x5 blur.
    for settings, scale in zip((baseline, r1, r2), expected["scales"]):
        assert settings.labeled_augmentation == augmentation(scale)
        assert settings.pseudo_augmentation == augmentation(scale) or settings is baseline
        assert settings.labeled_augmentation.jitter == 0
    assert tuple(s.labeling_ratio for s in round_schedule(p).values()) == expected["alphas"]
    assert all(s.init == "teacher" for s in round_schedule(p).values())
    assert InferenceSettings.from_params(p) == InferenceSettings("sliding", expected["crop"], None, True,
                                                                 expected["base_size"], "fp32")
    assert p.get("pseudo_label.method", str) == "dars" and not p.get("pseudo_label.temperature_scaling", bool)
    assert p.get("distributed.sync_batchnorm", bool) and p.get("train.precision", str) == "fp32"


def test_cityscapes_sets_split_as_the_authors():
    for stem in ("cityscapes_1-8_pspnet50_crop361", "cityscapes_1-8_deeplabv2"):
        p = by_name(stem)
        assert p.get("data.dataset", str) == "cityscapes"
        assert 2975 - labeled_size(2975, p.get("data.labeled_fraction", float), None) == 2603


def test_voc_set_takes_the_1464_train_images_as_labelled():
    p = by_name("voc_1464_pspnet50")
    assert p.get("data.dataset", str) == "voc"
    # Neither a fraction nor a count: the 1,464 train.txt images are the labelled split.
    assert p.get("data.labeled_fraction", float, default=None) is None
    assert p.get("data.labeled_count", int, default=None) is None
