"""Benchmark a round's pseudo-label work on a synthetic logits store: the confidence pass (logits →
per-pixel confidences and their histogram, once per teacher) and the labelling pass (histogram → thresholds,
maps → pseudo labels), i.e. what `dvc repro` runs for a new teacher, and the labelling pass alone, i.e. what
it runs for a change of method, α or seed.

    .venv/bin/python bench/bench_pseudo_label.py --scale small
    .venv/bin/python bench/bench_pseudo_label.py --scale cityscapes --images 200 --profile   # medium
    .venv/bin/python bench/bench_pseudo_label.py --scale cityscapes --workers 2
    .venv/bin/python bench/bench_pseudo_label.py --scale cityscapes --device cuda     # the softmax on a GPU

Builds a store of structured float16 logits at output stride 8 in a temporary directory (a few smooth
templates plus per-image noise, so confidences spread over [1/C, 1] like a real model's), then runs each
pass in a fresh child process and prints wall time, CPU seconds, the child's peak RSS, store sizes and file
counts. ``--profile`` also times the per-image steps on one image, at one torch thread
(confidence_and_prediction by bands of rows, as the stage's workers run on small machines) and at two (the
whole-image computation). CPU seconds are the load-independent figure.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline_lib.stores.logits_store import write_logits_store  # noqa: E402

SCALES = {
    # images, classes, label (H, W), logits (h, w)
    "small": (64, 19, (256, 512), (32, 64)),
    "cityscapes": (2603, 19, (1024, 2048), (128, 256)),
}
TEMPLATES = 8


def synthetic_logits(num_classes: int, logit_size: tuple[int, int], seed: int = 0):
    """A function image_index -> (C, h, w) float16: one of a few smooth templates plus mild noise."""
    rng = np.random.default_rng(seed)
    h, w = logit_size
    coarse = torch.from_numpy(rng.normal(0, 3, (TEMPLATES, num_classes, max(2, h // 8), max(2, w // 8))))
    # A class prior bias makes some classes frequent and others rare, as in street scenes.
    bias = torch.from_numpy(np.linspace(2.0, -2.0, num_classes))[None, :, None, None]
    templates = F.interpolate((coarse + bias).float(), size=(h, w), mode="bilinear", align_corners=False).numpy()

    def predict(index: int) -> np.ndarray:
        noise = np.random.default_rng([seed, index]).normal(0, 0.5, templates.shape[1:]).astype(np.float32)
        return (templates[index % TEMPLATES] + noise).astype(np.float16)

    return predict


def tree_size(path: Path) -> tuple[int, int]:
    files = [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files), len(files)


def _run_child(args: dict, queue: multiprocessing.Queue) -> None:
    """One pass in this fresh process: "confidence" or "labelling"."""
    start, cpu_start = time.perf_counter(), os.times()
    result: dict = {}
    if args["pass"] == "confidence":
        from pipeline_lib.confidence.run import run_confidences

        torch.set_num_threads(args["workers"])  # the stage's default: one worker thread per torch thread
        run_confidences(Path(args["store"]), Path(args["confidences"]), workers=args["workers"],
                        device=torch.device(args["device"]))
    else:
        from pipeline_lib.pseudo_label.run import run_pseudo_labeling

        stats = run_pseudo_labeling(Path(args["confidences"]), Path(args["out"]), Path(args["stats"]),
                                    Path(args["stats"]).with_name("metrics.json"), Path(args["plot"]),
                                    np.asarray(args["shares"]), args["method"], args["ratio"], seed=0)
        result = {"fraction_labeled": stats["fraction_labeled"], "kl_divergence": stats["kl_divergence"]}
    wall, cpu_end = time.perf_counter() - start, os.times()
    cpu = (cpu_end.user - cpu_start.user) + (cpu_end.system - cpu_start.system)
    queue.put({"wall_s": wall, "cpu_s": cpu, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
               **result})


def run_pass(args: dict) -> dict:
    context = multiprocessing.get_context("spawn")  # a fresh process: its peak RSS is the pass's alone
    queue = context.Queue()
    child = context.Process(target=_run_child, args=(args, queue))
    child.start()
    result = queue.get()
    child.join()
    return result


def profile_one_image(store_path: Path, method: str, ratio: float, shares: np.ndarray) -> None:
    """Time each per-image step once (after a warm-up) to see where pass 1 and pass 2 spend their time."""
    from pipeline_lib.confidence.histogram import ConfidenceHistogram
    from pipeline_lib.confidence.maps import confidence_and_prediction
    from pipeline_lib.pseudo_label.rules import assign_pseudo_labels, compute_thresholds
    from pipeline_lib.stores.logits_store import LogitsStore

    store = LogitsStore.open(store_path)
    timings: dict[str, float] = {}

    def timed(name, fn, *a):
        start = time.perf_counter()
        result = fn(*a)
        timings[name] = time.perf_counter() - start
        return result

    for threads in (1, 2):
        torch.set_num_threads(threads)
        logits = timed("read one image", store.logits, 0)
        confidence_and_prediction(logits, store.label_sizes[0])
        conf, pred = timed("confidence_and_prediction", confidence_and_prediction, logits, store.label_sizes[0])
        histogram = ConfidenceHistogram(len(store.class_names))
        timed("histogram.add", histogram.add, conf, pred)
        thresholds = compute_thresholds(histogram.counts, method, ratio, shares)
        timed("assign_pseudo_labels", assign_pseudo_labels, conf, pred, thresholds, 0, 0)
        print(f"  torch threads {threads}: " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in timings.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", choices=sorted(SCALES), default="small")
    parser.add_argument("--images", type=int, help="override the preset's number of images")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="where the confidence pass runs its softmax (cpu, cuda)")
    parser.add_argument("--method", default="dars")
    parser.add_argument("--labeling-ratio", type=float, default=0.2)
    parser.add_argument("--images-per-shard", type=int, default=16)
    parser.add_argument("--profile", action="store_true", help="also time the per-image steps")
    parser.add_argument("--workdir", type=Path, help="where to build the store (default: a temporary dir)")
    args = parser.parse_args()

    count, num_classes, label_size, logit_size = SCALES[args.scale]
    count = args.images or count
    shares = np.linspace(2.0, 0.1, num_classes)
    shares /= shares.sum()
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        work = Path(tmp)
        store = work / "logits.zarr"
        predict = synthetic_logits(num_classes, logit_size)
        start = time.perf_counter()
        write_logits_store(store, [f"img{i:05d}" for i in range(count)], [label_size] * count,
                           [logit_size] * count, [f"class{j}" for j in range(num_classes)], predict,
                           {"output_stride": 8, "checkpoint_sha256": "0" * 64, "model_arch": "synthetic",
                            "split": "unlabeled"}, images_per_shard=args.images_per_shard)
        create_s = time.perf_counter() - start
        store_bytes, store_files = tree_size(store)
        raw = count * num_classes * logit_size[0] * logit_size[1] * 2
        print(f"scale {args.scale}: {count} images, {num_classes} classes, labels {label_size[0]}x{label_size[1]}, "
              f"logits {logit_size[0]}x{logit_size[1]}")
        print(f"logits store: created in {create_s:.1f} s, {store_bytes / 2**20:.1f} MiB "
              f"(raw float16 {raw / 2**20:.1f} MiB), {store_files} files")
        if args.profile:
            print("per-image steps:")
            profile_one_image(store, args.method, args.labeling_ratio, shares)

        child_args = {"store": str(store), "confidences": str(work / "confidences.zarr"),
                      "out": str(work / "labels.zarr"), "stats": str(work / "stats.json"),
                      "plot": str(work / "classes.csv"), "shares": shares.tolist(), "method": args.method,
                      "ratio": args.labeling_ratio, "workers": args.workers, "device": args.device}
        pixels = count * label_size[0] * label_size[1]
        first = run_pass({**child_args, "pass": "confidence"})
        confidence_bytes, confidence_files = tree_size(work / "confidences.zarr")
        print(f"confidence pass ({args.device}, workers {args.workers}): {first['wall_s']:.1f} s wall, "
              f"{first['cpu_s']:.1f} CPU-s "
              f"({first['cpu_s'] / count * 1000:.0f} ms/image), peak RSS {first['peak_rss_mb']:.0f} MiB; "
              f"confidence store {confidence_bytes / 2**20:.1f} MiB "
              f"({confidence_bytes / pixels:.2f} bytes/pixel), {confidence_files} files")
        second = run_pass({**child_args, "pass": "labelling"})
        label_bytes, label_files = tree_size(work / "labels.zarr")
        print(f"labelling pass ({args.method}, alpha {args.labeling_ratio}): {second['wall_s']:.1f} s wall, "
              f"{second['cpu_s']:.1f} CPU-s ({second['cpu_s'] / count * 1000:.0f} ms/image), peak RSS "
              f"{second['peak_rss_mb']:.0f} MiB; label store {label_bytes / 2**20:.1f} MiB, {label_files} files; "
              f"fraction_labeled {second['fraction_labeled']:.4f}, KL {second['kl_divergence']:.2e}")
        whole = first["cpu_s"] + second["cpu_s"]
        print(f"a round (both passes): {first['wall_s'] + second['wall_s']:.1f} s wall, {whole:.1f} CPU-s "
              f"({whole / count * 1000:.0f} ms/image); a change of method, alpha or seed (labelling only): "
              f"{second['cpu_s']:.1f} CPU-s; extra disk kept: {confidence_bytes / 2**20:.1f} MiB")
        print(json.dumps({"scale": args.scale, "images": count, "workers": args.workers, "device": args.device,
                          "create_s": create_s,
                          "store_mib": store_bytes / 2**20, "store_files": store_files,
                          "confidence_store_mib": confidence_bytes / 2**20, "confidence_store_files": confidence_files,
                          "label_store_mib": label_bytes / 2**20, "label_store_files": label_files,
                          "cpu_count": os.cpu_count(), "confidence_pass": first, "labelling_pass": second}))


if __name__ == "__main__":
    main()
