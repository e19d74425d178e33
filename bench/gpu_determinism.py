"""Is a seeded training run bit-identical on this device, and if not, which operations make it differ.

Trains a model ``--steps`` steps twice from the same seed on the same batches (the step of bench_models: forward,
cross-entropy on the upsampled logits, backward, SGD) and compares the weights bit for bit, in fp32 and in bf16
autocast; with ``--deterministic`` under the settings a stage makes on a GPU (pipeline_lib.device: cuDNN's
deterministic algorithms, the cuBLAS workspace setting, PyTorch's deterministic mode), listing the operations it
warns have no deterministic implementation. One mode per process: the cuBLAS setting must precede CUDA's start.

    python bench/gpu_determinism.py --device cuda
    python bench/gpu_determinism.py --device cuda --deterministic
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", choices=("cpu", "cuda"))
    parser.add_argument("--arch", default="lraspp_mobilenet_v3_large")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--deterministic", action="store_true")
    args = parser.parse_args()
    import torch

    from bench.bench_models import NUM_CLASSES, training_step
    from pipeline_lib.device import _make_cuda_deterministic
    from pipeline_lib.models.build import build_model, parameter_groups

    if args.deterministic:
        _make_cuda_deterministic()  # the stages' own settings, before CUDA starts
    device = torch.device(args.device)
    generator = torch.Generator().manual_seed(1)
    batches = [(torch.randn(args.batch, 3, args.crop, args.crop, generator=generator),
                torch.randint(0, NUM_CLASSES, (args.batch, args.crop, args.crop), generator=generator))
               for _ in range(4)]

    def train(bf16: bool) -> torch.Tensor:
        torch.manual_seed(0)
        model = build_model(args.arch, NUM_CLASSES).train().to(device)
        optimizer = torch.optim.SGD(parameter_groups(model, 0.01, 10.0), lr=0.01, momentum=0.9)
        for step in range(args.steps):
            images, labels = batches[step % len(batches)]
            training_step(model, optimizer, images.to(device), labels.to(device), bf16)
        return torch.cat([p.detach().float().flatten().cpu() for p in model.state_dict().values()
                          if p.is_floating_point()])

    mode = "deterministic mode" if args.deterministic else "default"
    for bf16 in (False, True):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            first, second = train(bf16), train(bf16)
        flagged = sorted({str(w.message).split(" does not have")[0] for w in caught
                          if "deterministic" in str(w.message)})
        differ = (first != second).sum().item()
        print(f"{args.arch} on {args.device}, {'bf16' if bf16 else 'fp32'}, {mode}, {args.steps} steps: "
              f"{'identical' if differ == 0 else f'{differ} of {first.numel()} weights differ'} "
              f"(max |diff| {(first - second).abs().max().item():.3g})", flush=True)
        for name in flagged:
            print(f"  no deterministic implementation: {name}")


if __name__ == "__main__":
    main()
