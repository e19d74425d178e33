"""One device policy and one precision policy, for training and inference alike."""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from contextlib import nullcontext

import torch

from pipeline_lib.errors import UserError
from pipeline_lib.settings import PRECISIONS

# Where every stage runs: auto (a GPU when torch sees one, else the CPU), cpu or cuda. A property of the machine,
# not of the experiment, so an environment variable rather than a DVC-tracked param (results on a GPU differ
# from the CPU's by float rounding; a rerun on the same device is identical, on a GPU by _make_cuda_deterministic).
DEVICE_VARIABLE = "DARS_DEVICE"
DEVICE_CHOICES = ("auto", "cpu", "cuda")


def uses_gpu(env: Mapping[str, str] = os.environ) -> bool:
    """Whether the stages run on GPUs here (``DARS_DEVICE``, default auto)."""
    choice = env.get(DEVICE_VARIABLE, "auto").strip().lower() or "auto"
    if choice not in DEVICE_CHOICES:
        raise UserError(f"{DEVICE_VARIABLE} must be one of {', '.join(DEVICE_CHOICES)}, got {choice!r}")
    if choice == "cuda" and not torch.cuda.is_available():
        raise UserError(f"{DEVICE_VARIABLE}=cuda but torch sees no GPU here (torch {torch.__version__}); "
                        f"unset it or use {DEVICE_VARIABLE}=cpu")
    return choice == "cuda" or (choice == "auto" and torch.cuda.is_available())


def pick_device(local_rank: int = 0, env: Mapping[str, str] = os.environ) -> torch.device:
    """GPU ``local_rank`` when the stages use GPUs (see :func:`uses_gpu`), else the CPU (every CPU process
    shares it)."""
    if not uses_gpu(env):
        return torch.device("cpu")
    if local_rank >= torch.cuda.device_count():
        raise UserError(f"process {local_rank} on this machine has no GPU of its own "
                        f"({torch.cuda.device_count()} visible); lower distributed.processes")
    _make_cuda_deterministic()
    return torch.device("cuda", local_rank)


def _make_cuda_deterministic() -> None:
    """A seeded rerun on a GPU as bit-identical as on the CPU: DVC's caching and every comparison of methods here
    rely on it. Measured on an H200 (torch 2.11, bench/gpu_determinism.py): 30 training steps of the default
    model, run twice from one seed, left 2.9 M of its 3.2 M weights different by default and none with these
    settings. Not on the CPU, whose kernels are deterministic already and where the mode would only add work
    (it fills the memory of every new tensor).

    ``warn_only``: an operation without a deterministic CUDA kernel still runs, and says so once per process.
    The one the default model uses, cross-entropy's forward sum, changes only the logged loss's last digits:
    its gradient does not depend on the summation order. PSPNet's pyramid pooling (adaptive_avg_pool2d's
    backward) is another, which does change its weights: measured, they differed after 8 steps in fp32."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read when cuBLAS starts, after this
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(True, warn_only=True)
    warnings.filterwarnings("ignore", message="nll_loss2d_forward_out_cuda_template does not have a deterministic")


def _cpu_has_native_bf16() -> bool:
    """Whether oneDNN runs bf16 natively on this CPU (AVX-512 BF16 or AMX). Without it bf16 is emulated: measured
    on a 2-core AVX2 EPYC, a 64-channel 3x3 convolution took 2,576 ms in bf16 against 33 ms in fp32, and a
    training step of the default model 4.5 s against 0.44 s."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch without the probe: assume the slow case
        return False


def _cpu_identity(cpuinfo: str) -> tuple[str, set[str]]:
    """(vendor id, feature flags) of the first processor in a /proc/cpuinfo text."""
    vendor, flags = "", set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "vendor_id" and not vendor:
            vendor = value.strip()
        elif key.strip() == "flags" and not flags:
            flags = set(value.split())
    return vendor, flags


def _read_cpuinfo() -> str:
    try:
        with open("/proc/cpuinfo") as file:
            return file.read()
    except OSError:  # not Linux: nothing known, fp32 (the safe choice)
        return ""


def cpu_prefers_bf16(cpuinfo: str | None = None, native_bf16: bool | None = None) -> bool:
    """Whether bf16 trains faster than fp32 on this CPU, by the kinds measured (docs/performance.md: the default
    model's training step alone, bf16 rate / fp32 rate):

    - AMD EPYC (Zen 5) with AVX-512 BF16: 0.97-1.17 over five runs of the pipeline's step, 1.0 in the median;
      1.11 on random inputs (bench/bench_models.py) → no gain worth fp32's exactness: fp32;
    - Intel Xeon with AVX-512 BF16 and FP16 but no AMX: 0.75 (oneDNN's AVX-512 bf16 kernels lose to its fp32
      ones there) → fp32;
    - AVX2 only: bf16 emulated, 10x slower → fp32;
    - Intel with AMX: bf16 runs on the AMX tiles, the case oneDNN's bf16 is built for → bf16 (no AMX machine
      was lent while measuring: the rule follows oneDNN's design there, not a figure here).

    So bf16 needs AMX and oneDNN's native bf16 support."""
    if not (_cpu_has_native_bf16() if native_bf16 is None else native_bf16):
        return False
    _, flags = _cpu_identity(_read_cpuinfo() if cpuinfo is None else cpuinfo)
    return "amx_bf16" in flags


# Models that train faster in fp32 (TF32 convolutions) than in bf16 autocast on a GPU. Measured on an H200
# (bench/bench_models.py, img/s of a training step, fp32 / bf16): LR-ASPP MobileNetV3 427 / 296 at batch 8, 128²,
# and 820 / 532 at batch 16, 256² (its depthwise convolutions and small tensors gain nothing from bf16, and the
# casts cost); PSPNet-50 282 / 315 at batch 16, 256² (bf16 1.12x).
FP32_ON_GPU = ("lraspp_mobilenet_v3_large",)


def resolve_precision(device: torch.device, precision: str, arch: str | None = None) -> str:
    """The precision a stage computes in on ``device`` for a model of architecture ``arch``: ``precision``
    itself, or for ``auto`` the faster one there. On a GPU bf16 (fp32's range: no loss scaling, no overflow of
    large logits; fp16 on GPUs without bf16), but fp32 for the models in FP32_ON_GPU; on a CPU bf16 where
    :func:`cpu_prefers_bf16`, else fp32. Training, inference and evaluation all resolve ``train.precision`` with
    the model's architecture here, so a teacher's logits are computed in the precision it was trained in."""
    if precision not in PRECISIONS:
        raise UserError(f"unknown precision {precision!r}; expected one of {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        if arch in FP32_ON_GPU:
            return "fp32"
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_prefers_bf16() else "fp32"


_AUTOCAST_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def autocast_context(device: torch.device, precision: str):
    """Mixed precision at ``precision`` (resolved by :func:`resolve_precision`, without an architecture: stages
    resolve with theirs first); a no-op for fp32."""
    dtype = _AUTOCAST_DTYPES[resolve_precision(device, precision)]
    if dtype is None:
        return nullcontext()
    return torch.autocast(device.type, dtype=dtype)
