"""The training losses: cross-entropy over valid pixels with the weighted aux term, over the mixed batch
(``pixel_mean``) or per source, each source its own forward pass (``per_source``, the authors')."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pipeline_lib.data.classes import IGNORE_INDEX


def segmentation_loss(outputs: dict, target: torch.Tensor, aux_weight: float,
                      pixel_normalizer: float | None = None) -> torch.Tensor:
    """Cross-entropy (ignore 255) on logits upsampled to the target size, plus the weighted aux loss.

    Each term is the mean over the non-ignored pixels of ``target``, or, given ``pixel_normalizer``, their
    sum divided by it (one rank's share of a batch split over processes, or one source's part of a batch).
    """
    size = target.shape[-2:]

    def ce(logits: torch.Tensor) -> torch.Tensor:
        logits = F.interpolate(logits.float(), size=size, mode="bilinear", align_corners=False)
        if pixel_normalizer is None:
            return F.cross_entropy(logits, target, ignore_index=IGNORE_INDEX)
        return F.cross_entropy(logits, target, ignore_index=IGNORE_INDEX, reduction="sum") / pixel_normalizer

    loss = ce(outputs["out"])
    if aux_weight > 0 and outputs.get("aux") is not None:
        loss = loss + aux_weight * ce(outputs["aux"])
    return loss


def source_counts(per_batch: list[int], rank: int, world_size: int) -> list[int]:
    """How many of rank ``rank``'s images come from each source, in order: a rank takes every
    ``world_size``-th key of the global batch, whose keys list the sources one after the other."""
    counts, start = [], 0
    for count in per_batch:
        first = (rank - start) % world_size  # this rank's first position within the source's keys
        counts.append(len(range(first, count, world_size)))
        start += count
    return counts


class PerSourceForward(nn.Module):
    """The model run once per source, each part of the batch its own BatchNorm batch (as the authors' two
    forward passes), in one module call: DistributedDataParallel expects one forward per backward."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor, counts: list[int]) -> list[dict]:
        return [self.model(part) for part in images.split(counts)]


def per_source_loss(outputs: list[dict], targets: torch.Tensor, counts: list[int], valid_pixels: list[float],
                    aux_weight: float, world_size: int = 1) -> torch.Tensor:
    """Sum over sources of each one's mean loss over its valid pixels in the whole batch (``valid_pixels``,
    summed over ranks): weight 1 each, as the authors' ``supervised + 1.0 × pseudo`` loss. A source with no
    valid pixel in the batch adds 0. Dividing by (valid / world_size) makes DDP's gradient average exact."""
    return sum(segmentation_loss(output, target, aux_weight, max(valid, 1.0) / world_size)
               for output, target, valid in zip(outputs, targets.split(counts), valid_pixels))
