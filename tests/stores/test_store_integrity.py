"""A damaged store is refused, never read as fill values: a deleted, a truncated or a corrupted shard of any
stage store (logits, confidences, pseudo labels), or a histogram that does not count the store's pixels, gives
one message naming the shard file and how to restore or remake it — by hand, in a DataLoader
worker, and from the `dars` command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline_lib.confidence.histogram import ConfidenceHistogram
from pipeline_lib.data.classes import CITYSCAPES
from pipeline_lib.data.prepared import DatasetSpec, Sample
from pipeline_lib.errors import UserError
from pipeline_lib.stores.confidence_store import ConfidenceStore, write_confidence_store
from pipeline_lib.stores.logits_store import LogitsStore, write_logits_store
from pipeline_lib.stores.pseudo_label_store import PseudoLabelStore, write_label_store

IDS = [f"img{i}" for i in range(6)]
SIZES = [(16, 24)] * 6
CLASSES = ["a", "b", "c"]


def logits_store(path: Path) -> Path:
    rng = np.random.default_rng(0)
    logits = [rng.normal(size=(3, 4, 6)).astype(np.float16) for _ in IDS]
    write_logits_store(path, IDS, SIZES, [(4, 6)] * 6, CLASSES, lambda i: logits[i],
                       {"output_stride": 4, "checkpoint_sha256": "ab" * 32, "model_arch": "m", "split": "unlabeled"},
                       images_per_shard=2)
    return path


def label_store(path: Path, class_names=CLASSES) -> Path:
    rng = np.random.default_rng(1)
    masks = [rng.integers(0, len(class_names), size=s).astype(np.uint8) for s in SIZES]
    write_label_store(path, IDS, SIZES, class_names, masks, {"method": "dars", "labeling_ratio": 0.2,
                      "temperature": 1.0, "seed": 0, "checkpoint_sha256": "ab" * 32}, images_per_shard=2)
    return path


def confidence_store(path: Path) -> Path:
    rng = np.random.default_rng(2)
    maps = [(rng.uniform(0.4, 1.0, s).astype(np.float16), rng.integers(0, 3, s).astype(np.uint8)) for s in SIZES]
    histogram = ConfidenceHistogram(len(CLASSES))
    for confidence, prediction in maps:
        histogram.add(confidence, prediction)
    write_confidence_store(path, IDS, SIZES, CLASSES, maps, lambda: histogram.counts,
                           {"temperature": 1.0, "checkpoint_sha256": "ab" * 32}, images_per_shard=2)
    return path


def shard(path: Path, array: str) -> Path:
    """The second shard file (images 2–3)."""
    return next(p for p in (path / array / "c" / "1").rglob("*") if p.is_file())


def damage(file: Path, how: str) -> None:
    data = file.read_bytes()
    if how == "deleted":
        file.unlink()
    elif how == "truncated":
        file.write_bytes(data[:len(data) // 2])
    else:  # corrupted: the shard's first chunk overwritten in place, the file keeps its size and index
        file.write_bytes(data[:8] + bytes(16) + data[24:])


STORES = {"logits": (logits_store, "logits", LogitsStore, lambda s: s.logits(2), "infer"),
          "confidences": (confidence_store, "maps", ConfidenceStore, lambda s: s.maps(2), "confidence"),
          "pseudo labels": (label_store, "labels", PseudoLabelStore, lambda s: s.label(2), "pseudo_label")}


@pytest.mark.parametrize("how", ["deleted", "truncated", "corrupted"])
@pytest.mark.parametrize("kind", list(STORES))
def test_a_damaged_shard_is_refused_naming_the_file(tmp_path, kind, how):
    make, array, reader, read_image, producer = STORES[kind]
    store = make(tmp_path / "outputs" / "r1" / "store.zarr")
    file = shard(store, array)
    damage(file, how)
    with pytest.raises(UserError) as raised:
        read_image(reader.open(store))
    message = str(raised.value)
    assert message.startswith(f"{store}/{array}/c/1/")
    assert ("missing shard" if how == "deleted" else "damaged shard") in message
    assert f"dvc checkout {store}" in message and f"dvc repro {producer}@r1" in message
    assert "\n" not in message
    with pytest.raises(UserError):  # whole-store iteration too
        opened = reader.open(store)
        for _ in opened.iter_blocks():
            pass


@pytest.mark.parametrize("how", ["deleted", "corrupted", "miscounted"])
def test_a_damaged_or_wrong_histogram_is_refused(tmp_path, how):
    store = confidence_store(tmp_path / "outputs" / "r1" / "confidences.zarr")
    file = next(p for p in (store / "histogram" / "c").rglob("*") if p.is_file())
    if how == "miscounted":  # a well-formed histogram that does not count the store's pixels
        import zarr

        zarr.open_array(str(store), path="histogram", mode="r+")[0, 100] += 1
    else:
        damage(file, how)
    with pytest.raises(UserError) as raised:
        ConfidenceStore.open(store).histogram_counts()
    message = str(raised.value)
    assert message.startswith(f"{store}/histogram") and "dvc repro confidence@r1" in message and "\n" not in message
    assert {"deleted": "missing", "corrupted": "damaged", "miscounted": "the images have"}[how] in message


def test_an_intact_store_reads_back(tmp_path):
    store = label_store(tmp_path / "s.zarr")
    opened = PseudoLabelStore.open(store)
    assert [index for index, _ in opened.iter_labels()] == list(range(6))


@pytest.mark.parametrize("how", ["deleted", "corrupted"])
def test_a_damaged_pseudo_label_store_is_refused_inside_a_dataloader_worker(tmp_path, how):
    from pipeline_lib.train.images import TrainingImages

    store = label_store(tmp_path / "outputs" / "r1" / "pseudo_labels.zarr", list(CITYSCAPES.names))
    images = tmp_path / "images"
    images.mkdir()
    from PIL import Image
    for image_id, size in zip(IDS, SIZES):
        Image.fromarray(np.zeros((*size, 3), np.uint8)).save(images / f"{image_id}.png")
    samples = [Sample(i, images / f"{i}.png", None) for i in IDS]
    dataset = TrainingImages(samples, DatasetSpec("t", tmp_path, CITYSCAPES, None), 0.0, 16,
                             pseudo_label_store=store)
    if how == "deleted":
        shard(store, "labels").unlink()
    else:
        damage(shard(store, "labels"), "corrupted")
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=[[(2, 0)]], num_workers=1)
    with pytest.raises(UserError) as raised:
        next(iter(loader))
    # The worker's traceback comes along in the message; the CLI prints only its last line (see stages).
    assert str(raised.value).splitlines()[-1].split("UserError: ")[-1].startswith(f"{store}/labels/c/1/")


def test_the_commands_refuse_a_deleted_shard_in_one_line(tmp_path):
    from pipeline_project import make_project

    project = make_project(tmp_path / "project")
    subprocess.run([sys.executable, "-m", "stages.cli", "prepare"], cwd=project, check=True, capture_output=True)
    from pipeline_lib.data.prepared import read_split
    from pipeline_lib.layout import file_sha256

    unlabeled = read_split(project / "data" / "prepared", "unlabeled")
    teacher = project / "outputs" / "r0" / "model.pt"
    teacher.parent.mkdir(parents=True)
    teacher.write_bytes(b"stands in for the teacher: only its sha256 is read")
    logits = project / "outputs" / "r1" / "logits.zarr"
    rng = np.random.default_rng(0)
    write_logits_store(logits, [s.id for s in unlabeled], [(64, 128)] * len(unlabeled), [(8, 16)] * len(unlabeled),
                       list(CITYSCAPES.names), lambda i: rng.normal(size=(19, 8, 16)).astype(np.float16),
                       {"output_stride": 8, "checkpoint_sha256": file_sha256(teacher), "model_arch": "m",
                        "split": "unlabeled"}, images_per_shard=4)
    def command(stage: str) -> str:
        result = subprocess.run([sys.executable, "-m", "stages.cli", stage, "--round", "r1"], cwd=project,
                                capture_output=True, text=True)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1, result.stderr
        return lines[0]

    shard(logits, "logits").unlink()
    line = command("confidence")
    assert line.startswith("error: outputs/r1/logits.zarr/logits/c/1/") and "missing shard" in line
    assert not (project / "outputs" / "r1" / "confidences.zarr").exists()

    confidences = project / "outputs" / "r1" / "confidences.zarr"
    unlabeled_sizes = [(64, 128)] * len(unlabeled)
    maps = [(np.full(size, 0.5, np.float16), np.zeros(size, np.uint8)) for size in unlabeled_sizes]
    histogram = ConfidenceHistogram(19)
    for confidence, prediction in maps:
        histogram.add(confidence, prediction)
    write_confidence_store(confidences, [s.id for s in unlabeled], unlabeled_sizes, list(CITYSCAPES.names), maps,
                           lambda: histogram.counts, {"temperature": 1.0, "checkpoint_sha256": file_sha256(teacher)},
                           images_per_shard=4)
    shard(confidences, "maps").unlink()
    line = command("pseudo-label")
    assert line.startswith("error: outputs/r1/confidences.zarr/maps/c/1/") and "missing shard" in line
    assert not (project / "outputs" / "r1" / "pseudo_labels.zarr").exists()
