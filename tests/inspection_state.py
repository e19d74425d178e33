"""For the `dars inspect` tests: a tiny but real pipeline state and a way to run the command on it.

The state is params.yaml, a prepared dataset, a round's logits store and the pseudo labels, stats
and class-share CSV that the real pseudo-labelling driver makes from it. Everything is seeded, so two
builds with the same arguments give identical files.

Import from tests as ``from inspection_state import build_project`` (pytest puts tests/ on sys.path).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

from pipeline_lib.atomic import atomic_path
from pipeline_lib.data.classes import ClassSet
from pipeline_lib.data.prepared import Sample, load_class_distribution, write_prepared
from pipeline_lib.confidence.histogram import ConfidenceHistogram
from pipeline_lib.stores.confidence_store import write_confidence_store
from pipeline_lib.stores.logits_store import write_logits_store
from pipeline_lib.stores.pseudo_label_store import write_label_store

CLASSES = ClassSet(("road", "car", "person", "sign"),
                   ((128, 64, 128), (0, 0, 142), (220, 20, 60), (220, 220, 0)))
SIZE = (24, 40)  # (H, W) of every image
UNLABELED_IDS = tuple(f"unl_{i:02d}" for i in range(6))
UNLABELED_WITHOUT_TRUTH = "unl_05"  # an unlabelled image with no ground-truth mask
PARAMS_YAML = """\
seed: 0
rounds:
  r1: {teacher: r0, init: teacher, labeling_ratio: 0.5}
  r2: {teacher: r1, init: teacher, labeling_ratio: 0.8}
"""


class _RoundFiles(NamedTuple):
    logits: Path
    confidences: Path
    pseudo_labels: Path
    pseudo_label_stats: Path
    pseudo_label_metrics: Path
    class_distribution_plot: Path


def _truth(rng: np.random.Generator) -> np.ndarray:
    """Long-tailed blocky classes: mostly road, some car, a little person and sign, a few ignored cells."""
    grid = rng.choice([0, 0, 0, 0, 1, 1, 2, 3, 255], size=(SIZE[0] // 4, SIZE[1] // 4))
    return np.kron(grid, np.ones((4, 4), np.int64)).astype(np.uint8)


def _image(truth: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    palette = CLASSES.palette(ignore_color=(90, 90, 90)).astype(np.int16)
    return np.clip(palette[truth] + rng.integers(-25, 26, size=(*truth.shape, 3)), 0, 255).astype(np.uint8)


def run_inspect(*args: str | Path) -> tuple[int, str]:
    """Run `dars inspect` with ``args``; its exit code and its output (stdout and stderr, whitespace folded)."""
    import typer
    from typer.testing import CliRunner

    from stages import reports_user_errors
    from stages.inspect import inspect

    app = typer.Typer()
    app.command()(reports_user_errors(inspect))
    result = CliRunner().invoke(app, [str(a) for a in args])
    output = result.output + (result.stderr if result.stderr_bytes is not None else "")
    return result.exit_code, " ".join(output.split())


def write_params(root: Path) -> None:
    (root / "params.yaml").write_text(PARAMS_YAML)


def build_state(root: Path, variant: int = 0, method: str = "dars", driver: bool = True) -> None:
    """Write data/prepared (images inside it) and outputs/r1/{logits.zarr, confidences.zarr, pseudo_labels.zarr,
    stats, csv}.

    ``variant`` changes the teacher's logits (and so every pseudo label) without changing the dataset.
    ``driver=False`` skips the real pseudo-labelling driver (and its torch import, seconds on a busy
    machine): the confidences are the softmax of the logits repeated to label size, the labels their argmax where
    the top logit exceeds 2, and no stats are written.
    """
    root = Path(root)
    rng = np.random.default_rng(0)
    prepared = root / "data" / "prepared"
    with atomic_path(prepared) as tmp:
        files = tmp / "files"
        (files / "images").mkdir(parents=True)
        (files / "labels").mkdir()
        splits: dict[str, list[Sample]] = {"labeled": [], "unlabeled": [], "val": []}
        names = [("labeled", f"lab_{i:02d}") for i in range(3)] + [("unlabeled", i) for i in UNLABELED_IDS] \
            + [("val", "val_00")]
        truths = {}
        for split, image_id in names:
            truth = _truth(rng)
            truths[image_id] = truth
            image_path, label_path = files / "images" / f"{image_id}.png", files / "labels" / f"{image_id}.png"
            Image.fromarray(_image(truth, rng)).save(image_path)
            has_label = not (split == "unlabeled" and image_id == UNLABELED_WITHOUT_TRUTH)
            if has_label:
                Image.fromarray(truth).save(label_path)
            splits[split].append(Sample(image_id, image_path, label_path if has_label else None))
        # A relative root stays relative (write_prepared keeps absolute ones as they are), so the prepared
        # folder, images included, can move or be checked out by DVC elsewhere.
        write_prepared(Path(os.path.relpath(tmp)), "tiny", Path(os.path.relpath(files)), CLASSES,
                       {split: [Sample(s.id, Path(os.path.relpath(s.image)),
                                       None if s.label is None else Path(os.path.relpath(s.label)))
                                for s in samples] for split, samples in splits.items()})

    # outputs/r1/... by hand: pipeline_lib.config would import torch (seconds) into the DVC stage of the tests.
    round_dir = root / "outputs" / "r1"
    paths = _RoundFiles(round_dir / "logits.zarr", round_dir / "confidences.zarr", round_dir / "pseudo_labels.zarr",
                        round_dir / "pseudo_label_stats.json", round_dir / "pseudo_label_metrics.json",
                        round_dir / "class_distribution.csv")
    noise = np.random.default_rng(100 + variant)
    logit_size = (SIZE[0] // 2, SIZE[1] // 2)

    def predict(index: int) -> np.ndarray:
        truth = truths[UNLABELED_IDS[index]][::2, ::2]
        logits = noise.normal(0.0, 1.5, size=(CLASSES.num_classes, *logit_size))
        for j in range(CLASSES.num_classes):
            logits[j] += 2.5 * (truth == j)
        return logits.astype(np.float32)

    write_logits_store(paths.logits, UNLABELED_IDS, [SIZE] * len(UNLABELED_IDS), [logit_size] * len(UNLABELED_IDS),
                       CLASSES.names, predict,
                       {"output_stride": 2, "checkpoint_sha256": f"teacher-{variant}", "model_arch": "fixture",
                        "split": "unlabeled"}, images_per_shard=4)
    if not driver:
        noise = np.random.default_rng(100 + variant)  # the same logits again
        full = [np.repeat(np.repeat(predict(index), 2, axis=1), 2, axis=2) for index in range(len(UNLABELED_IDS))]
        histogram = ConfidenceHistogram(CLASSES.num_classes)
        maps = []
        for logits in full:
            exp = np.exp(logits - logits.max(axis=0))
            confidence = (exp.max(axis=0) / exp.sum(axis=0)).astype(np.float16)
            maps.append((confidence, logits.argmax(axis=0).astype(np.uint8)))
            histogram.add(*maps[-1])
        write_confidence_store(paths.confidences, UNLABELED_IDS, [SIZE] * len(UNLABELED_IDS), CLASSES.names, maps,
                               lambda: histogram.counts,
                               {"temperature": 1.0, "checkpoint_sha256": f"teacher-{variant}"}, images_per_shard=4)
        write_label_store(paths.pseudo_labels, UNLABELED_IDS, [SIZE] * len(UNLABELED_IDS), CLASSES.names,
                          (np.where(logits.max(axis=0) > 2.0, logits.argmax(axis=0), 255).astype(np.uint8)
                           for logits in full),
                          {"method": "simple", "labeling_ratio": 0.5, "temperature": 1.0,
                           "seed": 0, "checkpoint_sha256": f"teacher-{variant}"},
                          images_per_shard=4)
        return
    from pipeline_lib.confidence.run import run_confidences
    from pipeline_lib.pseudo_label.run import run_pseudo_labeling

    gt_paths = {s.id: s.label for s in splits["unlabeled"]}

    def ground_truth(image_id: str) -> np.ndarray | None:
        return None if gt_paths[image_id] is None else truths[image_id]

    run_confidences(paths.logits, paths.confidences, workers=1)
    run_pseudo_labeling(paths.confidences, paths.pseudo_labels, paths.pseudo_label_stats, paths.pseudo_label_metrics,
                        paths.class_distribution_plot, labeled_distribution=load_class_distribution(prepared),
                        method=method, labeling_ratio=0.5, seed=0, ground_truth=ground_truth)


def build_project(root: Path, variant: int = 0, method: str = "dars", driver: bool = True) -> Path:
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    write_params(root)
    build_state(root, variant, method, driver)
    return root
