"""The streaming two-pass pseudo-labelling driver: soft-prediction store in, pseudo-label store out.

Pass 1 turns every image's logits into full-resolution (confidence, prediction) maps and counts them in
a ConfidenceHistogram — memory is one histogram per worker, whatever the number of images — then derives
the per-class thresholds. Pass 2 recomputes the maps (cheaper than keeping ~3 bytes per pixel of the whole
split), draws the pseudo labels, writes the label store shard by shard and tallies the statistics.

Workers are threads: the heavy steps (torch upsampling/softmax, numpy bincount) release the GIL, and
threads share the histogram merge for free. Every result depends only on the image index (seeded per
image) and integer sums, so the outputs are byte-identical for any number of workers.
"""

from __future__ import annotations

import json
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from pipeline_lib.atomic import atomic_path
from pipeline_lib.data.classes import IGNORE_INDEX
from pipeline_lib.errors import UserError
from pipeline_lib.progress import track
from pipeline_lib.pseudo_label.confidence import confidence_and_prediction, validate_temperature
from pipeline_lib.pseudo_label.histogram import ConfidenceHistogram
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
from pipeline_lib.stores.logits_store import LogitsStore
from pipeline_lib.stores.pseudo_label_store import write_label_store
from pipeline_lib.stores.sharded_stack import StoreLike

GroundTruth = Callable[[str], "np.ndarray | None"]


def run_pseudo_labeling(logits_store: StoreLike, out_store: Path, stats_path: Path, metrics_path: Path,
                        class_plot_path: Path,
                        labeled_distribution: np.ndarray, method: str, labeling_ratio: float, seed: int,
                        temperature: float = 1.0, ground_truth: GroundTruth | None = None, workers: int = 2,
                        expect_classes: Sequence[str] | None = None,
                        expect_image_ids: Sequence[str] | None = None,
                        expect_checkpoint: str | None = None) -> dict[str, Any]:
    """Pseudo-label every image of ``logits_store``; write the label store, the stats JSON, its summary (the
    metrics JSON) and the class-share CSV.

    ``labeled_distribution`` (C,) is the labelled split's pixels per class (or their shares; integer counts make
    DA's n_j exact, see ``rules.target_counts``). ``ground_truth(id)``,
    when given, returns an image's true mask (or None) to measure pseudo-label accuracy. All four outputs
    appear together, only once everything succeeded. Returns the stats dict.
    """
    method = validate_method(method)
    labeling_ratio = validate_labeling_ratio(labeling_ratio)
    temperature = validate_temperature(temperature)
    if workers < 1:
        raise UserError(f"workers must be >= 1, got {workers}")
    store = LogitsStore.open(logits_store, expect_classes=expect_classes, expect_image_ids=expect_image_ids,
                             expect_checkpoint=expect_checkpoint)
    shares = _check_shares(labeled_distribution, store.class_names)

    with _thread_pool(workers) as pool:
        histogram = _count_confidences(store, pool, workers, temperature)
        thresholds = compute_thresholds(histogram, method, labeling_ratio, shares)
        tally = PixelTally.empty(len(store.class_names))
        attrs = {"method": method, "labeling_ratio": labeling_ratio, "temperature": float(temperature),
                 "seed": int(seed), "source_checkpoint_sha256": store.attrs.get("checkpoint_sha256"),
                 "thresholds": [threshold_or_none(t) for t in thresholds.threshold],
                 "keep_probabilities": [float(p) for p in thresholds.keep_probability]}
        with atomic_path(out_store) as tmp_store, atomic_path(stats_path) as tmp_stats, \
                atomic_path(metrics_path) as tmp_metrics, atomic_path(class_plot_path) as tmp_plot:
            labels = _draw_labels(store, pool, workers, temperature, thresholds, seed, ground_truth, tally)
            write_label_store(tmp_store, store.image_ids, store.label_sizes, store.class_names, labels, attrs,
                              images_per_shard=store.images_per_shard)
            stats = summarize(store.class_names, shares, thresholds, tally, method, labeling_ratio, temperature,
                              seed, images=len(store), total_pixels=histogram.total())
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


@contextmanager
def _thread_pool(workers: int) -> Iterator[ThreadPoolExecutor]:
    """A pool of ``workers`` threads, with torch's own intra-op threads sharing the cores between them.

    With at least as many workers as cores each runs torch at one thread, where confidence_and_prediction
    works by bands of rows (half the CPU time of the whole-image computation it runs with more threads).
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pseudo-label")
    try:
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        torch.set_num_threads(previous)


def _ordered_map(pool: ThreadPoolExecutor, work: Callable[..., Any], items: Iterable[tuple[Any, ...]],
                 window: int) -> Iterator[Any]:
    """``work(*item)`` for each item, results in input order, at most ``window`` items in flight.

    The bounded window keeps memory flat; the main thread reads the next shard while workers compute.
    """
    pending: deque[Future] = deque()
    for item in items:
        pending.append(pool.submit(work, *item))
        if len(pending) >= window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def _count_confidences(store: LogitsStore, pool: ThreadPoolExecutor, workers: int,
                       temperature: float) -> ConfidenceHistogram:
    """Pass 1: the histogram of (prediction, confidence) over every pixel of every image."""
    num_classes = len(store.class_names)
    local = threading.local()
    per_thread: list[ConfidenceHistogram] = []
    lock = threading.Lock()

    def count(index: int, logits: np.ndarray) -> None:
        histogram = getattr(local, "histogram", None)
        if histogram is None:
            histogram = local.histogram = ConfidenceHistogram(num_classes)
            with lock:
                per_thread.append(histogram)
        confidence, prediction = confidence_and_prediction(logits, store.label_sizes[index], temperature)
        histogram.add(confidence, prediction)

    for _ in track(_ordered_map(pool, count, store.iter_logits(), 2 * workers), total=len(store),
                   desc="pass 1: confidences", unit="img"):
        pass
    total = ConfidenceHistogram(num_classes)
    for histogram in per_thread:  # integer sums: the same whatever the split between threads
        total.merge(histogram)
    return total




def _draw_labels(store: LogitsStore, pool: ThreadPoolExecutor, workers: int, temperature: float,
                 thresholds: ClassThresholds, seed: int, ground_truth: GroundTruth | None,
                 tally: PixelTally) -> Iterator[np.ndarray]:
    """Pass 2: yield each image's pseudo label in order, adding its counts to ``tally``."""
    num_classes = len(store.class_names)

    def draw(index: int, logits: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        confidence, prediction = confidence_and_prediction(logits, store.label_sizes[index], temperature)
        label = assign_pseudo_labels(confidence, prediction, thresholds, seed, index)
        counts = np.bincount(label.ravel(), minlength=256)[:num_classes]
        truth = ground_truth(store.image_ids[index]) if ground_truth is not None else None
        if truth is None:
            return label, counts, None
        truth = np.asarray(truth)
        if truth.shape != label.shape:
            raise UserError(f"ground truth of image {store.image_ids[index]!r} is {truth.shape[1]}x{truth.shape[0]}, "
                            f"its pseudo label {label.shape[1]}x{label.shape[0]}")
        judged = (truth != IGNORE_INDEX) & (label != IGNORE_INDEX)
        judged_labels = label[judged]
        correct = np.bincount(judged_labels[judged_labels == truth[judged]], minlength=num_classes)
        return label, counts, np.stack([correct, np.bincount(judged_labels, minlength=num_classes)])

    results = _ordered_map(pool, draw, store.iter_logits(), 2 * workers)
    for label, counts, accuracy in track(results, total=len(store), desc="pass 2: pseudo labels", unit="img"):
        tally.final_counts += counts
        if accuracy is not None:
            tally.correct += accuracy[0]
            tally.judged += accuracy[1]
            tally.images_with_truth += 1
        yield label
