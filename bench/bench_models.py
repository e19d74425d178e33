"""Training throughput of each architecture on the CPU or a GPU: fp32, bf16 autocast as the pipeline trains
(``train.precision: bf16``), and bf16 with channels_last memory format; or, with ``--depthwise``, fp32 with
oneDNN's depthwise backward against the pipeline's (pipeline_lib/models/depthwise.py), in adjacent pairs.

One training step = forward, cross-entropy on the logits upsampled to the crop (plus 0.4 × the
aux loss where there is an aux head), backward, SGD step. Prints images per second of the
median timed step.

    .venv/bin/python -m bench.bench_models --archs pspnet_resnet18 lraspp_mobilenet_v3_large
    python -m bench.bench_models --device cuda --archs lraspp_mobilenet_v3_large --batch 8 --crop 128
    python -m bench.bench_models --depthwise --archs lraspp_mobilenet_v3_large --batch 8 --crop 128 --steps 20
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from pipeline_lib.models.build import ARCHITECTURES, build_model, parameter_groups
from pipeline_lib.models.depthwise import DepthwiseConv2d

NUM_CLASSES = 19
AUX_WEIGHT = 0.4


def training_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, images, labels, bf16: bool) -> None:
    with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=bf16):
        outputs = model(images)
        loss = 0.0
        for name, logits in outputs.items():
            upsampled = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=False)
            weight = AUX_WEIGHT if name == "aux" else 1.0
            loss = loss + weight * F.cross_entropy(upsampled.float(), labels, ignore_index=255)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def images_per_second(arch: str, batch: int, crop: int, warmup: int, steps: int, bf16: bool,
                      device: torch.device = torch.device("cpu"), channels_last: bool = False,
                      onednn_depthwise_backward: bool = False) -> float:
    torch.manual_seed(0)
    model = build_model(arch, NUM_CLASSES).train().to(device)
    if onednn_depthwise_backward:
        for module in model.modules():
            if type(module) is DepthwiseConv2d:
                module.__class__ = torch.nn.Conv2d
    images = torch.randn(batch, 3, crop, crop, device=device)
    labels = torch.randint(0, NUM_CLASSES, (batch, crop, crop), device=device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(parameter_groups(model, 0.01, 10.0), lr=0.01, momentum=0.9)
    synchronize = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        training_step(model, optimizer, images, labels, bf16)
    step_seconds = []
    for _ in range(steps):
        synchronize()
        start = time.perf_counter()
        training_step(model, optimizer, images, labels, bf16)
        synchronize()  # a GPU step has ended when its kernels have, not when Python has queued them
        step_seconds.append(time.perf_counter() - start)
    # The median step resists the other processes sharing the machine better than the mean.
    return batch / statistics.median(step_seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", nargs="+", default=list(ARCHITECTURES), choices=ARCHITECTURES)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--depthwise", action="store_true",
                        help="fp32: oneDNN's depthwise backward against the pipeline's, --pairs adjacent pairs")
    parser.add_argument("--pairs", type=int, default=3)
    args = parser.parse_args()
    device = torch.device(args.device)
    where = torch.cuda.get_device_name() if device.type == "cuda" else f"{torch.get_num_threads()} threads"
    print(f"torch {torch.__version__}, {where}, batch {args.batch}, crop {args.crop}²")
    if args.depthwise:
        compare_depthwise_backward(args, device)
        return
    print(f"{'architecture':32s} {'fp32 img/s':>11s} {'bf16 img/s':>11s} {'bf16+CL img/s':>14s} "
          f"{'bf16 speed-up':>14s}")
    for arch in args.archs:
        fp32, bf16, bf16_cl = (images_per_second(arch, args.batch, args.crop, args.warmup, args.steps, bf16=bf16,
                                                 device=device, channels_last=channels_last)
                               for bf16, channels_last in ((False, False), (True, False), (True, True)))
        print(f"{arch:32s} {fp32:11.2f} {bf16:11.2f} {bf16_cl:14.2f} {bf16 / fp32:13.2f}×", flush=True)


def compare_depthwise_backward(args: argparse.Namespace, device: torch.device) -> None:
    """fp32 images per second with oneDNN's depthwise backward and with the pipeline's, one after the other
    ``--pairs`` times; the speed-up is the median of the pairs' ratios (a pair shares what else the machine ran)."""
    print(f"{'architecture':32s} {'oneDNN img/s':>13s} {'pipeline img/s':>15s} {'speed-up':>9s}")
    for arch in args.archs:
        pairs = [tuple(images_per_second(arch, args.batch, args.crop, args.warmup, args.steps, bf16=False,
                                         device=device, onednn_depthwise_backward=onednn)
                       for onednn in (True, False)) for _ in range(args.pairs)]
        onednn, ours = (statistics.median(values) for values in zip(*pairs))
        speed_up = statistics.median(b / a for a, b in pairs)
        print(f"{arch:32s} {onednn:13.2f} {ours:15.2f} {speed_up:8.2f}×", flush=True)


if __name__ == "__main__":
    main()
