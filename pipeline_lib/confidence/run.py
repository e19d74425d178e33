"""The confidence pass: a teacher's logits store in, its confidence store out (per-pixel maps and the histogram).

Each image's logits become full-resolution (confidence, prediction) maps once; they are counted into a
:class:`ConfidenceHistogram` and written to the store, so the labelling pass (any method, α or seed) reads
them instead of recomputing the softmax. Memory is one histogram per worker and one shard of maps in flight,
whatever the number of images.

Workers are threads: the heavy steps (torch upsampling/softmax, numpy bincount, zstd) release the GIL, and
threads share the histogram merge for free. Under several processes each takes whole shards and the
histograms are summed exactly (int64). Every result depends only on the image and integer sums, so the store
is byte-identical for any number of workers and processes (on the CPU; see :func:`confidence_and_prediction`
for a GPU).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline_lib.confidence.histogram import ConfidenceHistogram
from pipeline_lib.confidence.maps import confidence_and_prediction, validate_temperature
from pipeline_lib.errors import UserError
from pipeline_lib.stores.confidence_store import write_confidence_store
from pipeline_lib.stores.logits_store import LogitsStore
from pipeline_lib.stores.sharded_stack import SingleWriter, StoreLike, StoreWriters, owned_images


def run_confidences(logits_store: StoreLike, out_store: Path, temperature: float = 1.0, workers: int | None = None,
                    device: torch.device = torch.device("cpu"), writers: StoreWriters = SingleWriter(),
                    expect_classes: Sequence[str] | None = None, expect_image_ids: Sequence[str] | None = None,
                    expect_checkpoint: str | None = None) -> np.ndarray:
    """Write ``out_store`` from the logits of ``logits_store`` divided by ``temperature``; returns the histogram
    counts (C, 65536) over every image. The store appears only once every image and the histogram are written.

    ``workers`` threads (default: one per core this process has, torch's thread count) compute the maps;
    ``device`` runs the softmax there (a GPU: the whole-image computation, results as float rounding there gives
    them); under several ``writers`` each computes the images of its own shards.
    """
    temperature = validate_temperature(temperature)
    workers = torch.get_num_threads() if workers is None else workers
    if workers < 1:
        raise UserError(f"workers must be >= 1, got {workers}")
    store = LogitsStore.open(logits_store, expect_classes=expect_classes, expect_image_ids=expect_image_ids,
                             expect_checkpoint=expect_checkpoint)
    num_classes = len(store.class_names)
    images = owned_images(len(store), store.images_per_shard, writers)
    attrs = {"temperature": float(temperature), "checkpoint_sha256": store.attrs["checkpoint_sha256"],
             "model_arch": store.attrs.get("model_arch"), "teacher_round": store.attrs.get("teacher_round"),
             "split": store.attrs.get("split")}
    local = threading.local()
    per_thread: list[ConfidenceHistogram] = []
    lock = threading.Lock()

    def compute(index: int, logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        histogram = getattr(local, "histogram", None)
        if histogram is None:
            histogram = local.histogram = ConfidenceHistogram(num_classes)
            with lock:
                per_thread.append(histogram)
        confidence, prediction = confidence_and_prediction(torch.from_numpy(logits).to(device),
                                                           store.label_sizes[index], temperature)
        histogram.add(confidence, prediction)
        return confidence, prediction

    summed: list[np.ndarray] = []

    def total_histogram() -> np.ndarray:
        counts = np.zeros((num_classes, 1 << 16), np.int64)
        for histogram in per_thread:  # integer sums: the same whatever the split between threads and processes
            counts += histogram.counts
        summed.append(writers.sum_counts(counts))
        return summed[0]

    with thread_pool(workers if device.type == "cpu" else 1) as pool:
        maps = ordered_map(pool, compute, store.iter_logits(images), 2 * workers)
        write_confidence_store(out_store, store.image_ids, store.label_sizes, store.class_names, maps,
                               total_histogram, attrs, images_per_shard=store.images_per_shard, writers=writers)
    return summed[0]


@contextmanager
def thread_pool(workers: int) -> Iterator[ThreadPoolExecutor]:
    """A pool of ``workers`` threads, with torch's intra-op threads of this process shared between them.

    With at least as many workers as torch threads each runs torch at one thread, where confidence_and_prediction
    works by bands of rows (half the CPU time of the whole-image computation it runs with more threads).
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(max(1, previous // workers))
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="confidence")
    try:
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        torch.set_num_threads(previous)


def ordered_map(pool: ThreadPoolExecutor, work: Callable[..., Any], items: Iterable[tuple[Any, ...]],
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
