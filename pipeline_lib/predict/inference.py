"""Dense prediction for one image: whole-image or sliding-window inference, optional flip averaging.

The logits grid. Every mode returns logits on the same grid, at the model's native stride
``s = model.output_stride``: the image is first padded (bottom/right, with zeros, i.e. the ImageNet
mean colour after normalisation) to ``Hp = ceil(H / s) * s`` by ``Wp = ceil(W / s) * s``, and the
result has ``Hp / s`` rows and ``Wp / s`` columns; cell (i, j) covers image pixels
``[i*s, (i+1)*s) x [j*s, (j+1)*s)`` (the last row / column may be partly padding). Because the cells
line up with the pixels exactly, sliding windows and the flipped image land on the same cells, and
``logits_at_resolution`` maps the grid back to pixels by upsampling to ``(Hp, Wp)`` and cropping.

With a base size the image is first resized (bilinear) so that its long side is that many pixels, as the
PSPNet reference's test does (Cityscapes: base size 1024 turns 2048x1024 frames into 1024x512), and the grid
is that of the resized image; mapping it back to the label's pixels resizes back.

Sliding windows are ``crop x crop`` pixels at offsets that are multiples of ``s``; each contributes
the ``floor(crop / s)`` leading cells of its output in each direction (the cells that lie wholly
inside the window), and overlapping contributions are averaged. Where the padded image is smaller
than a window it is padded further, to the window size (as the PSPNet reference code does).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from pipeline_lib.device import autocast_context
from pipeline_lib.errors import UserError
from pipeline_lib.predict.upsample import upsample_logits

MODES = ("whole", "sliding")


def output_stride_of(model: torch.nn.Module) -> int:
    stride = getattr(model, "output_stride", None)
    if not isinstance(stride, int) or stride < 1:
        raise TypeError(f"{type(model).__name__} must have a positive int attribute 'output_stride'")
    return stride


def _forward(model: torch.nn.Module, batch: torch.Tensor, precision: str) -> torch.Tensor:
    with autocast_context(batch.device, precision):
        out = model(batch)
    logits = out["out"] if isinstance(out, dict) else out
    return logits.float()


def _pad_bottom_right(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    pad_h, pad_w = height - image.shape[-2], width - image.shape[-1]
    if pad_h == 0 and pad_w == 0:
        return image
    return F.pad(image, (0, pad_w, 0, pad_h))  # zeros = the mean colour of a normalised image


def window_offsets(cells: int, window_cells: int, step_cells: int) -> list[int]:
    """Window offsets in cells along one axis: every ``step_cells``, the last one flush with the end."""
    if cells <= window_cells:
        return [0]
    last = cells - window_cells
    return sorted(set(range(0, last, step_cells)) | {last})


def _sliding(model: torch.nn.Module, image: torch.Tensor, cells_h: int, cells_w: int, crop: int,
             stride: int, out_stride: int, window_batch: int, precision: str) -> torch.Tensor:
    window_cells = crop // out_stride
    step_cells = stride // out_stride
    rows = window_offsets(cells_h, window_cells, step_cells)
    cols = window_offsets(cells_w, window_cells, step_cells)
    # Enough padding that every window (crop pixels from its offset) lies inside the image.
    image = _pad_bottom_right(image, rows[-1] * out_stride + crop, cols[-1] * out_stride + crop)
    offsets = [(r, c) for r in rows for c in cols]
    canvas = None
    counts = torch.zeros(1, rows[-1] + window_cells, cols[-1] + window_cells, device=image.device)
    for start in range(0, len(offsets), window_batch):
        chunk = offsets[start:start + window_batch]
        batch = torch.stack([image[:, r * out_stride:r * out_stride + crop, c * out_stride:c * out_stride + crop]
                             for r, c in chunk])
        logits = _forward(model, batch, precision)
        if logits.shape[-2] < window_cells or logits.shape[-1] < window_cells:
            raise ValueError(f"model returned {tuple(logits.shape[-2:])} logits for a {crop}x{crop} window; "
                             f"expected at least {window_cells} per side at output stride {out_stride}")
        if canvas is None:
            canvas = torch.zeros(logits.shape[1], *counts.shape[1:], device=image.device)
        for (r, c), window in zip(chunk, logits):
            canvas[:, r:r + window_cells, c:c + window_cells] += window[:, :window_cells, :window_cells]
            counts[:, r:r + window_cells, c:c + window_cells] += 1
    return (canvas / counts)[:, :cells_h, :cells_w]


def _single_pass(model: torch.nn.Module, image: torch.Tensor, mode: str, crop: int | None, stride: int | None,
                 out_stride: int, window_batch: int, precision: str) -> torch.Tensor:
    """Logits on the grid described in the module docstring, for an image already padded to it."""
    cells_h, cells_w = image.shape[-2] // out_stride, image.shape[-1] // out_stride
    if mode == "whole":
        logits = _forward(model, image[None], precision)[0]
        if logits.shape[-2] < cells_h or logits.shape[-1] < cells_w:
            raise ValueError(f"model returned {tuple(logits.shape[-2:])} logits for a "
                             f"{image.shape[-2]}x{image.shape[-1]} input; expected {cells_h}x{cells_w}")
        return logits[:, :cells_h, :cells_w]
    return _sliding(model, image, cells_h, cells_w, crop, stride, out_stride, window_batch, precision)


def resolve_sliding(crop_size: int | None, stride: int | None, out_stride: int) -> tuple[int, int]:
    """Validate the crop and return (crop, stride); the stride defaults to ceil(2/3 crop) and is
    rounded down to a multiple of the output stride (at least one stride) so that window offsets
    stay on the grid."""
    if crop_size is None:
        raise UserError("sliding-window inference needs a crop size (eval crop_size)")
    if crop_size < out_stride:
        raise UserError(f"sliding-window crop size {crop_size} is smaller than the output stride {out_stride}")
    if stride is None:
        stride = math.ceil(2 * crop_size / 3)
    if stride < 1:
        raise UserError(f"sliding-window stride must be positive, got {stride}")
    on_grid = max(out_stride, stride // out_stride * out_stride)
    if on_grid > (crop_size // out_stride) * out_stride:
        raise UserError(f"sliding-window stride {stride} exceeds the crop size {crop_size}: windows would leave gaps")
    return crop_size, on_grid


def inference_size(size: tuple[int, int], base_size: int | None) -> tuple[int, int]:
    """(H, W) of the image the model sees: ``size`` itself, or resized so that its long side is ``base_size``
    (the short side rounded as the PSPNet reference rounds it)."""
    height, width = size
    if base_size is None:
        return height, width
    if height > width:
        return base_size, round(base_size / height * width)
    return round(base_size / width * height), base_size


def resize_for_inference(image: torch.Tensor, base_size: int | None) -> torch.Tensor:
    """A normalised (3, H, W) image resized to :func:`inference_size` (bilinear, as OpenCV's INTER_LINEAR)."""
    size = inference_size(tuple(image.shape[-2:]), base_size)
    if size == tuple(image.shape[-2:]):
        return image
    return F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]


def predict_logits(model: torch.nn.Module, image: torch.Tensor, mode: str = "whole", crop_size: int | None = None,
                   stride: int | None = None, flip: bool = False, precision: str = "auto",
                   window_batch: int = 4, base_size: int | None = None) -> torch.Tensor:
    """Logits (C, ceil(h/s), ceil(w/s)) for a normalised (3, H, W) image on the model's device, where (h, w)
    is :func:`inference_size` of (H, W): the image itself, or resized to ``base_size`` on its long side.

    ``mode`` "whole" runs one forward pass; "sliding" averages ``crop_size`` windows every ``stride``
    pixels (default ceil(2/3 crop)). ``flip`` also predicts the horizontally mirrored image and
    averages (after mirroring its logits back). ``precision``: one of train.precision's values, resolved on
    the model's device as training resolves it (``auto``: the device's faster one). ``window_batch`` windows
    go through the model at once. The model should be in eval mode; gradients are off.
    """
    if mode not in MODES:
        raise UserError(f"unknown inference mode {mode!r}; expected one of {', '.join(MODES)}")
    if image.ndim != 3:
        raise ValueError(f"expected a (3, H, W) image, got shape {tuple(image.shape)}")
    out_stride = output_stride_of(model)
    if mode == "sliding":
        crop_size, stride = resolve_sliding(crop_size, stride, out_stride)
    image = resize_for_inference(image, base_size)
    height, width = image.shape[-2:]
    padded = _pad_bottom_right(image, math.ceil(height / out_stride) * out_stride,
                               math.ceil(width / out_stride) * out_stride)
    with torch.inference_mode():
        logits = _single_pass(model, padded, mode, crop_size, stride, out_stride, window_batch, precision)
        if flip:
            # The padded width is a multiple of the stride, so mirrored cells coincide with the originals.
            mirrored = _single_pass(model, padded.flip(-1), mode, crop_size, stride, out_stride, window_batch,
                                    precision)
            logits = (logits + mirrored.flip(-1)) / 2
    return logits


def logits_at_resolution(logits: torch.Tensor, image_size: tuple[int, int], output_stride: int,
                         size: tuple[int, int] | None = None) -> torch.Tensor:
    """Map ``predict_logits`` output for an image of ``image_size`` (H, W) onto ``size`` pixels (default H, W).

    The grid covers the padded image ``ceil(H/s)*s`` x ``ceil(W/s)*s``; it is upsampled to that extent
    (scaled by size / image_size) and the padding cropped off, so pixels and cells stay aligned.
    """
    height, width = image_size
    out_h, out_w = size if size is not None else image_size
    cells_h, cells_w = logits.shape[-2:]
    full_h = max(out_h, round(cells_h * output_stride * out_h / height))
    full_w = max(out_w, round(cells_w * output_stride * out_w / width))
    return upsample_logits(logits, (full_h, full_w))[:, :out_h, :out_w]


def predict_labels(model: torch.nn.Module, image: torch.Tensor, label_size: tuple[int, int],
                   **kwargs) -> np.ndarray:
    """(H, W) uint8 class ids (argmax) at ``label_size``; ``kwargs`` go to ``predict_logits``."""
    logits = predict_logits(model, image, **kwargs)
    seen = inference_size(tuple(image.shape[-2:]), kwargs.get("base_size"))
    with torch.inference_mode():
        full = logits_at_resolution(logits, seen, output_stride_of(model), tuple(label_size))
        labels = full.argmax(0).to(torch.uint8)
    return labels.cpu().numpy()
