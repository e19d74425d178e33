"""DeepLabv2 (Chen et al., TPAMI 2018): dilated ResNet-101 with the ASPP classifier.

The paper's Table 2 setting. ASPP here is the v2 form: four parallel 3×3 convolutions with
dilations 6/12/18/24 straight to class logits, summed — no BN, no image pooling (those are v3).
No auxiliary head. Logits come back at stride 8, before any upsampling.
"""

from __future__ import annotations

from torch import Tensor, nn

from pipeline_lib.models.dilated_resnet import DilatedResNet

ASPP_DILATIONS = (6, 12, 18, 24)


class ASPPClassifier(nn.Module):
    """Sum of parallel dilated 3×3 convs, each mapping features directly to class logits."""

    def __init__(self, in_channels: int, num_classes: int, dilations: tuple[int, ...] = ASPP_DILATIONS) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Conv2d(in_channels, num_classes, kernel_size=3, padding=d, dilation=d, bias=True)
            for d in dilations
        )
        # The original (Caffe) DeepLabv2 initialises these with N(0, 0.01): small logits at start.
        for branch in self.branches:
            nn.init.normal_(branch.weight, mean=0.0, std=0.01)
            nn.init.zeros_(branch.bias)

    def forward(self, x: Tensor) -> Tensor:
        out = self.branches[0](x)
        for branch in self.branches[1:]:
            out = out + branch(x)
        return out


class DeepLabV2(nn.Module):
    """``forward(x)`` with x (N, 3, H, W) returns ``{"out": (N, C, ceil(H/8), ceil(W/8))}``."""

    output_stride = DilatedResNet.output_stride
    has_aux_head = False

    def __init__(self, num_classes: int, depth: int = 101) -> None:
        super().__init__()
        self.backbone = DilatedResNet(depth)
        self.classifier = ASPPClassifier(self.backbone.out_channels, num_classes)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        _, layer4 = self.backbone(x)
        return {"out": self.classifier(layer4)}
