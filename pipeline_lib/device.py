"""One device policy and one mixed-precision policy, for training and inference alike."""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from contextlib import nullcontext

import torch

from pipeline_lib.errors import UserError

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


def _cpu_has_fast_bf16() -> bool:
    """Whether oneDNN runs bf16 natively on this CPU (AVX-512 or AMX). Without it bf16 is emulated: measured
    on a 2-core AVX2 EPYC, a 64-channel 3x3 convolution took 2,576 ms in bf16 against 33 ms in fp32, and a
    training step of the default model 4.5 s against 0.44 s."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch without the probe: assume the slow case
        return False


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """The mixed-precision dtype for ``device``, or None for full fp32 precision.

    bf16 on GPUs that support it and on CPUs that run it natively (fp32's range: no loss scaling, no overflow
    of large logits), fp16 on older GPUs, fp32 on CPUs that would only emulate bf16. Training and inference
    use the same dtype on a device, so a teacher's logits are computed in the precision it was trained in."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if _cpu_has_fast_bf16() else None


def precision_name(device: torch.device, enabled: bool) -> str:
    """What autocast runs at on ``device``: "bf16", "fp16" or "fp32" (for log lines)."""
    dtype = autocast_dtype(device) if enabled else None
    return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, "fp32")


def autocast_context(device: torch.device, enabled: bool):
    """Mixed precision (see ``autocast_dtype``); a no-op when disabled or when the device has no fast dtype."""
    dtype = autocast_dtype(device) if enabled else None
    if dtype is None:
        return nullcontext()
    return torch.autocast(device.type, dtype=dtype)
