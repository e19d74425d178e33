"""The labelling pass: a teacher's confidence store in, the pseudo-label store and its statistics out.

The store's histogram gives the per-class thresholds of the method and α; its per-pixel maps the pixels to
keep. No softmax is computed here (the confidence stage did it once per teacher), so a change of method, α or
sampling seed costs one read of the maps and the drawing. Under several processes each draws the images of
its own shards of the label store; rank 0 computes the thresholds and shares them, and the per-class tallies
are summed exactly (int64). Every draw is seeded per image, so the outputs are byte-identical for any number
of processes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline_lib.atomic import atomic_path
from pipeline_lib.data.classes import IGNORE_INDEX
from pipeline_lib.errors import UserError
from pipeline_lib.pseudo_label.rules import (
    ClassThresholds,
    assign_pseudo_labels,
    compute_thresholds,
    validate_labeling_ratio,
    validate_method,
)
from pipeline_lib.pseudo_label.statistics import (
    PixelTally,
    class_share_csv,
    summarize,
    summary_metrics,
    threshold_or_none,
)
from pipeline_lib.stores.confidence_store import ConfidenceStore
from pipeline_lib.stores.pseudo_label_store import write_label_store
from pipeline_lib.stores.sharded_stack import SingleWriter, StoreLike, StoreWriters, owned_images

GroundTruth = Callable[[str], "np.ndarray | None"]


def run_pseudo_labeling(confidence_store: StoreLike, out_store: Path, stats_path: Path, metrics_path: Path,
                        class_plot_path: Path, labeled_distribution: np.ndarray, method: str, labeling_ratio: float,
                        seed: int, ground_truth: GroundTruth | None = None, writers: StoreWriters = SingleWriter(),
                        expect_classes: Sequence[str] | None = None,
                        expect_image_ids: Sequence[str] | None = None,
                        expect_checkpoint: str | None = None) -> dict[str, Any]:
    """Pseudo-label every image of ``confidence_store``; write the label store, the stats JSON, its summary (the
    metrics JSON) and the class-share CSV (rank 0 writes the three files).

    ``labeled_distribution`` (C,) is the labelled split's pixels per class (or their shares; integer counts make
    DA's n_j exact, see ``rules.target_counts``). ``ground_truth(id)``, when given, returns an image's true mask
    (or None) to measure pseudo-label accuracy. All four outputs appear together, only once everything
    succeeded. Returns the stats dict.
    """
    method = validate_method(method)
    labeling_ratio = validate_labeling_ratio(labeling_ratio)
    store = ConfidenceStore.open(confidence_store, expect_classes=expect_classes, expect_image_ids=expect_image_ids,
                                 expect_checkpoint=expect_checkpoint)
    shares = _check_shares(labeled_distribution, store.class_names)
    num_classes = len(store.class_names)
    counts = store.histogram_counts()
    # Computed once, on rank 0, and shared: every process draws with the very same thresholds.
    thresholds = writers.broadcast(compute_thresholds(counts, method, labeling_ratio, shares)
                                   if writers.rank == 0 else None)
    temperature = store.temperature
    attrs = {"method": method, "labeling_ratio": labeling_ratio, "temperature": temperature,
             "seed": int(seed), "checkpoint_sha256": store.attrs["checkpoint_sha256"],
             "thresholds": [threshold_or_none(t) for t in thresholds.threshold],
             "keep_probabilities": [float(p) for p in thresholds.keep_probability]}
    images = owned_images(len(store), store.images_per_shard, writers)
    tally = PixelTally.empty(num_classes)
    with ExitStack() as outputs:
        if writers.rank == 0:
            tmp_stats, tmp_metrics, tmp_plot = (outputs.enter_context(atomic_path(path))
                                                for path in (stats_path, metrics_path, class_plot_path))
        labels = _draw_labels(store, images, thresholds, seed, ground_truth, tally)
        write_label_store(out_store, store.image_ids, store.label_sizes, store.class_names, labels, attrs,
                          images_per_shard=store.images_per_shard, writers=writers)
        tally = PixelTally.from_array(writers.sum_counts(tally.as_array()))
        stats = summarize(store.class_names, shares, thresholds, tally, method, labeling_ratio, temperature,
                          seed, images=len(store), total_pixels=int(counts.sum()))
        if writers.rank == 0:
            tmp_stats.write_text(json.dumps(stats, indent=2) + "\n")
            tmp_metrics.write_text(json.dumps(summary_metrics(stats), indent=2) + "\n")
            tmp_plot.write_text(class_share_csv(store.class_names, shares, tally.final_counts))
    return stats


def _check_shares(labeled_distribution: np.ndarray, class_names: Sequence[str]) -> np.ndarray:
    shares = np.asarray(labeled_distribution, np.float64)  # integer counts stay exact (< 2^53)
    if shares.shape != (len(class_names),):
        raise UserError(f"labelled class shares have shape {shares.shape}, the store has "
                        f"{len(class_names)} classes")
    if not np.isfinite(shares).all() or (shares < 0).any() or shares.sum() <= 0:
        raise UserError("labelled class shares must be finite, non-negative and not all zero")
    return shares


def _draw_labels(store: ConfidenceStore, images: Sequence[int], thresholds: ClassThresholds, seed: int,
                 ground_truth: GroundTruth | None, tally: PixelTally) -> Iterator[np.ndarray]:
    """Yield the pseudo label of each of ``images`` in order, adding its counts to ``tally``."""
    num_classes = len(store.class_names)
    # No progress display here: the store's writer draws these labels lazily and reports them as it writes.
    for index, (confidence, prediction) in store.iter_maps(images):
        label = assign_pseudo_labels(confidence, prediction, thresholds, seed, index)
        # torch counts uint8 as it is; numpy's bincount first copies the image into 8-byte integers (3x the time).
        tally.final_counts += torch.bincount(torch.from_numpy(label.reshape(-1)), minlength=256).numpy()[:num_classes]
        truth = ground_truth(store.image_ids[index]) if ground_truth is not None else None
        if truth is not None:
            truth = np.asarray(truth)
            if truth.shape != label.shape:
                raise UserError(f"ground truth of image {store.image_ids[index]!r} is {truth.shape[1]}x"
                                f"{truth.shape[0]}, its pseudo label {label.shape[1]}x{label.shape[0]}")
            judged = (truth != IGNORE_INDEX) & (label != IGNORE_INDEX)
            judged_labels = label[judged]
            tally.correct += np.bincount(judged_labels[judged_labels == truth[judged]], minlength=num_classes)
            tally.judged += np.bincount(judged_labels, minlength=num_classes)
            tally.images_with_truth += 1
        yield label
