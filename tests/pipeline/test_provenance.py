"""Provenance enforced: pseudo-label refuses logits not made by the round's teacher, train refuses pseudo labels
drawn from another teacher's logits; each message names both checkpoints."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import torch

from pipeline_lib.confidence.histogram import ConfidenceHistogram
from pipeline_lib.data.classes import CITYSCAPES
from pipeline_lib.data.prepared import read_split
from pipeline_lib.layout import file_sha256
from pipeline_lib.models.build import build_model
from pipeline_lib.models.checkpoint import save_checkpoint
from pipeline_lib.stores.confidence_store import write_confidence_store
from pipeline_lib.stores.logits_store import write_logits_store
from pipeline_lib.stores.pseudo_label_store import write_label_store
from pipeline_project import make_project

ARCH = "lraspp_mobilenet_v3_large"


def project_with_teacher(tmp_path):
    project = make_project(tmp_path / "project")
    subprocess.run([sys.executable, "-m", "stages.cli", "prepare"], cwd=project, check=True, capture_output=True)
    torch.manual_seed(0)
    teacher = project / "outputs" / "r0" / "model.pt"
    save_checkpoint(teacher, build_model(ARCH, CITYSCAPES.num_classes), ARCH, list(CITYSCAPES.names), {})
    return project, teacher, read_split(project / "data" / "prepared", "unlabeled")


def run(project, *args) -> list[str]:
    result = subprocess.run([sys.executable, "-m", "stages.cli", *args], cwd=project, capture_output=True, text=True)
    assert result.returncode == 2, result.stdout + result.stderr
    return result.stderr.strip().splitlines()


def test_confidence_refuses_logits_of_another_teacher(tmp_path):
    project, teacher, unlabeled = project_with_teacher(tmp_path)
    rng = np.random.default_rng(0)
    other = "cd" * 32  # e.g. round 2's logits copied over round 1's
    write_logits_store(project / "outputs" / "r1" / "logits.zarr", [s.id for s in unlabeled],
                       [(64, 128)] * len(unlabeled), [(8, 16)] * len(unlabeled), list(CITYSCAPES.names),
                       lambda i: rng.normal(size=(19, 8, 16)).astype(np.float16),
                       {"output_stride": 8, "checkpoint_sha256": other, "model_arch": ARCH, "split": "unlabeled"},
                       images_per_shard=4)
    lines = run(project, "confidence", "--round", "r1")
    assert len(lines) == 1
    assert lines[0].startswith("error: outputs/r1/logits.zarr: the logits store was made by another model")
    assert other[:12] in lines[0] and file_sha256(teacher)[:12] in lines[0]
    assert "dvc repro infer@r1" in lines[0]
    assert not (project / "outputs" / "r1" / "confidences.zarr").exists()


def test_pseudo_label_refuses_confidences_of_another_teacher(tmp_path):
    project, teacher, unlabeled = project_with_teacher(tmp_path)
    other = "cd" * 32
    sizes = [(64, 128)] * len(unlabeled)
    maps = [(np.full(size, 0.5, np.float16), np.zeros(size, np.uint8)) for size in sizes]
    histogram = ConfidenceHistogram(19)
    for confidence, prediction in maps:
        histogram.add(confidence, prediction)
    write_confidence_store(project / "outputs" / "r1" / "confidences.zarr", [s.id for s in unlabeled], sizes,
                           list(CITYSCAPES.names), maps, lambda: histogram.counts,
                           {"temperature": 1.0, "checkpoint_sha256": other}, images_per_shard=4)
    lines = run(project, "pseudo-label", "--round", "r1")
    assert len(lines) == 1
    assert lines[0].startswith("error: outputs/r1/confidences.zarr: the confidence store was made by another model")
    assert other[:12] in lines[0] and file_sha256(teacher)[:12] in lines[0]
    assert "dvc repro confidence@r1" in lines[0]
    assert not (project / "outputs" / "r1" / "pseudo_labels.zarr").exists()


def test_train_refuses_pseudo_labels_of_another_teacher(tmp_path):
    project, teacher, unlabeled = project_with_teacher(tmp_path)
    other = "cd" * 32
    write_label_store(project / "outputs" / "r1" / "pseudo_labels.zarr", [s.id for s in unlabeled],
                      [(64, 128)] * len(unlabeled), list(CITYSCAPES.names),
                      (np.zeros((64, 128), np.uint8) for _ in unlabeled),
                      {"method": "dars", "labeling_ratio": 0.2, "temperature": 1.0, "seed": 0,
                       "checkpoint_sha256": other}, images_per_shard=4)
    lines = run(project, "train", "--round", "r1")
    assert lines[-1].startswith("error: outputs/r1/pseudo_labels.zarr: the pseudo-label store was made by another "
                                f"model (checkpoint sha256 {other[:12]}")
    assert file_sha256(teacher)[:12] in lines[-1] and "dvc repro pseudo_label@r1" in lines[-1]
    assert not (project / "outputs" / "r1" / "model.pt").exists()
