"""One device policy and one mixed-precision policy, for training and inference alike."""

from __future__ import annotations

from contextlib import nullcontext

import torch

from pipeline_lib.errors import UserError


def pick_device(local_rank: int = 0) -> torch.device:
    """GPU ``local_rank`` when there are GPUs, else the CPU (every CPU process shares it)."""
    if not torch.cuda.is_available():
        return torch.device("cpu")
    if local_rank >= torch.cuda.device_count():
        raise UserError(f"process {local_rank} on this machine has no GPU of its own "
                        f"({torch.cuda.device_count()} visible); lower distributed.processes")
    return torch.device("cuda", local_rank)


def autocast_dtype(device: torch.device) -> torch.dtype:
    """bf16 on CPU and on GPUs that support it (fp32's range: no loss scaling, no overflow of large logits),
    fp16 on older GPUs. Training and inference use the same dtype on a device, so a teacher's logits are
    computed in the precision it was trained in."""
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def autocast_context(device: torch.device, enabled: bool):
    """Mixed precision (see ``autocast_dtype``); a no-op when disabled."""
    if not enabled:
        return nullcontext()
    return torch.autocast(device.type, dtype=autocast_dtype(device))
