"""The one logits-upsampling policy: native-stride logits to a pixel grid, bilinear with align_corners=False
(as the training loss upsamples), in float32. Evaluation, pseudo-labelling and temperature fitting all use it."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def logits_tensor(logits: np.ndarray | torch.Tensor) -> torch.Tensor:
    """``logits`` as a (C, h, w) floating-point tensor (sharing memory where torch allows it)."""
    if isinstance(logits, torch.Tensor):
        tensor = logits.detach()
    else:
        array = np.asarray(logits)
        # torch will not wrap read-only memory (e.g. arrays read from zarr); copy those.
        tensor = torch.from_numpy(array if array.flags.writeable else array.copy())
    if tensor.ndim != 3:
        raise ValueError(f"logits must be (C, h, w), got shape {tuple(tensor.shape)}")
    if not tensor.is_floating_point():
        raise ValueError(f"logits must be floating point, got {tensor.dtype}")
    return tensor


def checked_size(label_size: tuple[int, int]) -> tuple[int, int]:
    height, width = (int(v) for v in label_size)
    if height < 1 or width < 1:
        raise ValueError(f"label_size must be positive, got {label_size}")
    return height, width


def upsample_logits(logits: np.ndarray | torch.Tensor, label_size: tuple[int, int]) -> torch.Tensor:
    """(C, h, w) logits of any float dtype -> a fresh float32 (C, H, W) tensor at ``label_size``.

    Bilinear with align_corners=False, as the model's own training loss upsamples. A torch tensor
    stays on its device (so GPU logits are upsampled on the GPU); numpy arrays go to CPU tensors.
    The result never shares memory with ``logits``, so callers may modify it in place.
    """
    height, width = checked_size(label_size)
    tensor = logits_tensor(logits)
    with torch.no_grad():
        if tuple(tensor.shape[1:]) != (height, width):
            return F.interpolate(tensor[None].float(), size=(height, width), mode="bilinear",
                                 align_corners=False)[0]
        return tensor.to(torch.float32, copy=True)
