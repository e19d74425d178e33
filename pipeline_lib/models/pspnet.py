"""PSPNet (Zhao et al., CVPR 2017) as in the hszhao/semseg reference that DARS builds on.

Dilated ResNet trunk (output stride 8) → pyramid pooling (bins 1, 2, 3, 6) → 3×3 conv → BN →
ReLU → dropout 0.1 → 1×1 classifier; an auxiliary FCN head on layer3 (the trainer weights its loss,
0.4 in the paper). Logits are returned at stride 8: the reference's final ×8 bilinear upsampling is
left to the caller, so that pseudo-label stores can keep the native-resolution logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipeline_lib.models.dilated_resnet import DilatedResNet

PPM_BINS = (1, 2, 3, 6)


class PyramidPoolingModule(nn.Module):
    """Concatenate the input with its average-pooled (bin×bin) summaries, upsampled back."""

    def __init__(self, in_channels: int, bins: tuple[int, ...] = PPM_BINS) -> None:
        super().__init__()
        reduced = in_channels // len(bins)
        self.stages = nn.ModuleList(
            nn.Sequential(
                nn.AdaptiveAvgPool2d(bin_size),
                nn.Conv2d(in_channels, reduced, kernel_size=1, bias=False),
                nn.BatchNorm2d(reduced),
                nn.ReLU(inplace=True),
            )
            for bin_size in bins
        )
        self.out_channels = in_channels + reduced * len(bins)

    def forward(self, x: Tensor) -> Tensor:
        size = x.shape[-2:]
        pooled = [
            F.interpolate(stage(x), size=size, mode="bilinear", align_corners=True) for stage in self.stages
        ]
        return torch.cat([x, *pooled], dim=1)


def segmentation_head(in_channels: int, mid_channels: int, num_classes: int) -> nn.Sequential:
    """3×3 conv → BN → ReLU → Dropout2d(0.1) → 1×1 conv to class logits (main and aux heads alike)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, mid_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(mid_channels),
        nn.ReLU(inplace=True),
        nn.Dropout2d(p=0.1),
        nn.Conv2d(mid_channels, num_classes, kernel_size=1),
    )


class PSPNet(nn.Module):
    """PSPNet on a dilated torchvision ResNet-18/50/101, or (``deep_stem``) the reference code's ResNet-50/101.

    Channel widths follow the reference for ResNet-50/101 (2048 → PPM 4×512 → 512; aux 1024 → 256)
    and scale by the same ratios for ResNet-18 (512 → PPM 4×128 → 128; aux 256 → 64).

    ``forward(x)`` with x of shape (N, 3, H, W) returns ``{"out": (N, C, ceil(H/8), ceil(W/8))}``,
    plus ``"aux"`` of the same shape in training mode when the aux head exists. With the
    reference's crop sizes 8k+1 (361, 713), ceil(H/8) = (H-1)/8 + 1, the reference's grid.
    Training needs a batch of at least 2 (BatchNorm after the 1×1 pooling bin).
    """

    output_stride = DilatedResNet.output_stride

    def __init__(self, depth: int, num_classes: int, aux_head: bool = True, deep_stem: bool = False) -> None:
        super().__init__()
        self.backbone = DilatedResNet(depth, deep_stem)
        feature_channels = self.backbone.out_channels
        self.ppm = PyramidPoolingModule(feature_channels)
        self.classifier = segmentation_head(self.ppm.out_channels, feature_channels // 4, num_classes)
        layer3_channels = self.backbone.layer3_channels
        self.aux_classifier = (
            segmentation_head(layer3_channels, layer3_channels // 4, num_classes) if aux_head else None
        )
        self.has_aux_head = aux_head

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        layer3, layer4 = self.backbone(x)
        result = {"out": self.classifier(self.ppm(layer4))}
        if self.training and self.aux_classifier is not None:
            result["aux"] = self.aux_classifier(layer3)
        return result
