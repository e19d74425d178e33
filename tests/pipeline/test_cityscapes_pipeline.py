"""The real `dvc repro` on a tiny Cityscapes tree (exact on-disk layout, labelIds only):
prepare → train r0 → evaluate r0 → infer r1 → pseudo-label r1 → train r1 → evaluate r1."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from fixtures import make_cityscapes_fixture
from pipeline_lib.data.classes import CITYSCAPES, cityscapes_label_id_lut
from pipeline_lib.data.prepared import Sample, read_split
from pipeline_lib.data.splits import split_labeled_unlabeled
from pipeline_lib.stores.pseudo_label_store import PseudoLabelStore
from pipeline_project import dvc, make_project, run, set_param

pytestmark = pytest.mark.slow

LABELED_FRACTION = 0.25  # of the fixture's 8 train images: 2 labelled, 6 unlabelled
SPLIT_SEED = 3


def ran_stages(stdout: str) -> list[str]:
    return sorted(line.split("'")[1] for line in stdout.splitlines() if line.startswith("Running stage"))


@pytest.fixture(scope="module")
def cityscapes_root(tmp_path_factory) -> Path:
    # No *_labelTrainIds.png: the prepare stage must fall back to labelIds and the label LUT.
    return make_cityscapes_fixture(tmp_path_factory.mktemp("data") / "cityscapes", train_ids=False)


@pytest.fixture(scope="module")
def project(tmp_path_factory, cityscapes_root) -> Path:
    root = make_project(tmp_path_factory.mktemp("cityscapes_pipeline"), {
        "data": {"dataset": "cityscapes", "root": str(cityscapes_root), "labeled_fraction": LABELED_FRACTION,
                 "split_seed": SPLIT_SEED},
        "train": {"iterations": 3, "crop_size": 32},
        "inference": {"mode": "sliding", "crop_size": 32, "flip": True},  # the paper's evaluation, scaled down
    })
    set_param(root, "rounds", {"r1": {"teacher": "r0", "init": "teacher", "labeling_ratio": 0.2,
                                      "iterations": None, "augmentation": {"pseudo": "beta 1.5"}}})
    run(["git", "commit", "-qam", "one round"], root)
    dvc(root, "repro")
    return root


def train_images(cityscapes_root: Path) -> list[str]:
    return sorted(p.name.removesuffix(".png") for p in (cityscapes_root / "leftImg8bit" / "train").glob("*/*.png"))


def split_ids(project: Path, split: str) -> list[str]:
    return [sample.id for sample in read_split(project / "data" / "prepared", split)]


def test_every_stage_writes_its_outputs(project):
    for round_name in ("r0", "r1"):
        metrics = json.loads((project / "outputs" / round_name / "metrics.json").read_text())
        assert 0.0 <= metrics["miou"] <= 1.0
        evaluation = json.loads((project / "outputs" / round_name / "evaluation.json").read_text())
        assert set(evaluation["iou"]) == set(CITYSCAPES.names) and evaluation["miou"] == metrics["miou"]
        assert (project / "outputs" / round_name / "model.pt").is_file()
    stats = json.loads((project / "outputs" / "r1" / "pseudo_label_stats.json").read_text())
    assert stats["method"] == "dars"
    assert not (project / "outputs" / "r2").exists()  # the one round params.yaml lists


def test_split_is_what_the_params_say(project, cityscapes_root):
    labeled, unlabeled = split_ids(project, "labeled"), split_ids(project, "unlabeled")
    assert len(labeled) == 2 and len(unlabeled) == 6
    assert sorted(labeled + unlabeled) == train_images(cityscapes_root)
    # The generated split is the hash-ranked one of data.labeled_fraction and data.split_seed.
    expected, _ = split_labeled_unlabeled([Sample(i, Path(i), None) for i in train_images(cityscapes_root)],
                                          labeled_fraction=LABELED_FRACTION, seed=SPLIT_SEED)
    assert labeled == [s.id for s in expected]
    assert split_ids(project, "val") == sorted(
        p.name.removesuffix(".png") for p in (cityscapes_root / "leftImg8bit" / "val").glob("*/*.png"))
    hashes = json.loads((project / "data" / "prepared" / "split_hashes.json").read_text())
    assert {k: v["images"] for k, v in hashes.items()} == {"labeled": 2, "unlabeled": 6, "val": 3}


def test_pseudo_labels_cover_exactly_the_unlabelled_split(project):
    store = PseudoLabelStore.open(project / "outputs" / "r1" / "pseudo_labels.zarr")
    unlabeled = split_ids(project, "unlabeled")
    assert sorted(store.image_ids) == sorted(unlabeled)
    for image_id in unlabeled:
        label = store.label(store.index_of(image_id))
        assert label.shape == (32, 64)
        assert set(np.unique(label).tolist()) <= set(range(19)) | {255}


def test_prepared_dataset_maps_label_ids_through_the_lut(project, cityscapes_root):
    prepared = project / "data" / "prepared"
    dataset = json.loads((prepared / "dataset.json").read_text())
    lut = cityscapes_label_id_lut()
    assert dataset["label_lut"] == lut.tolist()
    label_paths = [sample.label for sample in read_split(prepared, "labeled")]
    assert label_paths and all(p.name.endswith("_gtFine_labelIds.png") for p in label_paths)
    # The labelled class distribution counts train ids, i.e. labelIds mapped by the LUT.
    counts = np.zeros(19, np.int64)
    for path in label_paths:
        counts += np.bincount(lut[np.asarray(Image.open(cityscapes_root / path))].ravel(), minlength=256)[:19]
    distribution = json.loads((prepared / "class_distribution.json").read_text())
    assert distribution["pixel_counts"] == counts.tolist()


def test_a_copied_params_file_runs_as_an_experiment(project):
    """What docs/paper_experiment.md tells users: copy a params set over params.yaml, then `dvc exp run`."""
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["evaluate"]["tail_share_threshold"] = 0.05
    variant = project / "variant.yaml"
    variant.write_text(yaml.safe_dump(params, sort_keys=False))
    original = (project / "params.yaml").read_text()
    try:
        (project / "params.yaml").write_text(variant.read_text())
        result = dvc(project, "exp", "run", "-n", "copied-params")
        assert ran_stages(result.stdout) == ["check", "evaluate@r1", "evaluate_r0"]
        table = json.dumps(json.loads(dvc(project, "exp", "show", "--json").stdout))
        assert "copied-params" in table and "0.05" in table
    finally:
        (project / "params.yaml").write_text(original)
        variant.unlink()
