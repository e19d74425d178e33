"""How close the training loop comes to the model's step alone: the pipeline's loop / the pure step, as a ratio.

Both run the same model (built and seeded as round 0 builds it), the same optimiser, loss and precision, for
the same number of iterations, one after the other in this process:

- **pure step**: one real batch of the prepared labelled split, loaded once, then forward, loss, backward and
  SGD step, again and again: the most the loop could reach.
- **loop**: ``pipeline_lib.train.loop.train`` as `dars train --round r0` runs it: loading and augmenting every
  batch, logging, the resume checkpoints.

Each figure is iterations / wall seconds after ``--warm-up`` iterations, alike for both (what a training of
thousands of iterations runs at), the medians of ``--repeats`` runs, and the ratio the median of each adjacent
(pure step, loop) pair's; the last column is the loop's rate over its whole call against the pure step's, what a
short call also pays once (the loader's workers starting, the log written). The synthetic dataset is
prepared into a temporary folder unless ``--prepared`` names one.

    python -m bench.bench_training_loop                                  # the default model, auto precision
    python -m bench.bench_training_loop --archs lraspp_mobilenet_v3_large pspnet_resnet50 --precisions fp32 bf16
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import statistics
import tempfile
import time
from pathlib import Path
from unittest import mock

import torch

from pipeline_lib.data.prepared import load_spec, read_split
from pipeline_lib.device import autocast_context, pick_device, resolve_precision
from pipeline_lib.models.build import ARCHITECTURES, build_model, parameter_groups
from pipeline_lib.models.normalization import normalize_batch
from pipeline_lib.params import Params
from pipeline_lib.settings import BASELINE_ROUND, DataSettings, PRECISIONS, TrainSettings
from pipeline_lib.train.images import MixedSources, TrainingImages
from pipeline_lib.progress import track
from pipeline_lib.train import loop as training_loop
from pipeline_lib.train.loop import IterationBatches, poly_lr, train
from pipeline_lib.train.loss import segmentation_loss


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").is_file() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def prepared_dataset(params_path: Path, given: Path | None, scratch: Path) -> Path:
    if given is not None:
        return given
    from pipeline_lib.data.prepare import prepare_dataset

    prepared = scratch / "prepared"
    prepare_dataset(DataSettings.from_params(Params.load(params_path)), prepared)
    return prepared


def fresh_model(arch: str, num_classes: int, settings: TrainSettings, device: torch.device) -> torch.nn.Module:
    torch.manual_seed(settings.seed)  # as train_round seeds round 0's initialisation
    return build_model(arch, num_classes).to(device)


def pure_step_rate(arch: str, images: TrainingImages, settings: TrainSettings, device: torch.device,
                   warm_up: int) -> float:
    model = fresh_model(arch, images.spec.classes.num_classes, settings, device).train()
    optimizer = torch.optim.SGD(parameter_groups(model, settings.base_lr, settings.head_lr_multiplier),
                                lr=settings.base_lr, momentum=settings.momentum, weight_decay=settings.weight_decay)
    keys = next(iter(IterationBatches([len(images)], [settings.batch_size], settings.seed, 0, 1)))
    dataset = MixedSources([images])
    images_uint8, labels = (torch.stack(part).to(device) for part in zip(*(dataset[key] for key in keys)))
    batch, targets = normalize_batch(images_uint8), labels.long()
    synchronize = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    started = {}
    for iteration in range(settings.iterations):
        if iteration == warm_up:
            synchronize()
            started["at"] = time.perf_counter()
        for group in optimizer.param_groups:
            group["lr"] = poly_lr(group["initial_lr"], iteration, settings.iterations, settings.poly_power)
        with autocast_context(device, settings.precision):
            outputs = model(batch)
        loss = segmentation_loss(outputs, targets, settings.aux_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    synchronize()
    return (settings.iterations - warm_up) / (time.perf_counter() - started["at"])


def loop_rate(arch: str, images: TrainingImages, settings: TrainSettings, device: torch.device, scratch: Path,
              warm_up: int) -> tuple[float, float]:
    """(the loop's rate after ``warm_up`` iterations, its rate over the whole call): the first is the one a long
    training runs at; the second adds what a call costs once (loader workers starting, the log's files)."""
    model = fresh_model(arch, images.spec.classes.num_classes, settings, device)
    work = Path(tempfile.mkdtemp(dir=scratch))
    marks = {}

    class TimedBar:  # the loop's progress bar, noting when the batch that starts iteration warm_up arrives
        def __init__(self, iterable, **kwargs) -> None:
            self.bar = track(iterable, **kwargs)

        def __iter__(self):
            for index, item in enumerate(self.bar):
                if index == warm_up:
                    if device.type == "cuda":
                        torch.cuda.synchronize()
                    marks["warm"] = time.perf_counter()
                yield item

        def set_postfix(self, **values) -> None:
            self.bar.set_postfix(**values)

    started = time.perf_counter()
    with mock.patch.object(training_loop, "track", TimedBar):
        train(model, images, None, settings, device, work / "resume", "bench", work / "log")
    if device.type == "cuda":
        torch.cuda.synchronize()
    ended = time.perf_counter()
    # The warm mark is taken when iteration warm_up's batch arrives; the loop ends after the last step and its log.
    return (settings.iterations - warm_up) / (ended - marks["warm"]), settings.iterations / (ended - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--prepared", type=Path, help="a prepared dataset (default: prepare --params' dataset)")
    parser.add_argument("--archs", nargs="+", default=None, choices=ARCHITECTURES,
                        help="default: the params' model.arch")
    parser.add_argument("--precisions", nargs="+", default=["auto"], choices=PRECISIONS)
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5, help="pure step and loop alternately, this many times "
                        "each; the medians are shown, the ratio is the median of each pair's (a 2-core VM varies by "
                        "up to 20 %% from run to run)")
    parser.add_argument("--workers", type=int, help="override train.num_workers")
    parser.add_argument("--warm-up", type=int, default=20, help="iterations left out of the steady rates")
    args = parser.parse_args()

    params = Params.load(args.params)
    device = pick_device()
    archs = args.archs or [params.get("model.arch", str)]
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"{cpu_name()}, {torch.get_num_threads()} threads"
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        prepared = prepared_dataset(args.params, args.prepared, scratch)
        spec = load_spec(prepared)
        base = TrainSettings.from_params(params, BASELINE_ROUND)
        print(f"torch {torch.__version__} on {where}; {spec.name}, batch {base.batch_size}, crop {base.crop_size}², "
              f"{args.iterations} iterations each", flush=True)
        print(f"after {args.warm_up} warm-up iterations (the whole call's loop rate beside it, loader start-up and "
              "log included)", flush=True)
        print(f"{'architecture':28s} {'precision':>9s} {'pure step it/s':>15s} {'loop it/s':>10s} "
              f"{'loop / pure':>12s} {'whole call':>11s}", flush=True)
        for arch in archs:
            for precision in args.precisions:
                settings = dataclasses.replace(base, iterations=args.iterations, precision=precision,
                                               num_workers=base.num_workers if args.workers is None else args.workers)
                images = TrainingImages(read_split(prepared, "labeled", spec), spec, settings.labeled_augmentation,
                                        settings.crop_size)
                pures, loops, wholes = [], [], []
                for _ in range(args.repeats):
                    pures.append(pure_step_rate(arch, images, settings, device, args.warm_up))
                    steady, whole = loop_rate(arch, images, settings, device, scratch, args.warm_up)
                    loops.append(steady)
                    wholes.append(whole)
                # Each loop beside the pure step run just before it: a pair shares the machine's state.
                ratio = statistics.median(loop / pure for pure, loop in zip(pures, loops))
                whole_ratio = statistics.median(whole / pure for pure, whole in zip(pures, wholes))
                pure, loop = statistics.median(pures), statistics.median(loops)
                name = resolve_precision(device, precision)
                print(f"{arch:28s} {name:>9s} {pure:15.2f} {loop:10.2f} {ratio:12.2f} {whole_ratio:11.2f}",
                      flush=True)


if __name__ == "__main__":
    main()
