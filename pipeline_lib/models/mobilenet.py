"""torchvision's MobileNetV3-Large segmentation models, returning logits at their native stride.

torchvision's own ``forward`` upsamples to the input size; these wrappers keep its backbone and
heads but stop before that ``F.interpolate``. The backbone is the MobileNetV3 ``features``
sequence built with ``dilated=True`` (last stage dilated, so its deepest features are at stride 16).
Sizes below assume the usual ceil-halving of stride-2 convs with "same" padding. Their depthwise convolutions
train on the CPU with the faster backward of :mod:`pipeline_lib.models.depthwise`.
"""

from __future__ import annotations

from torch import Tensor, nn
from torchvision.models.segmentation import deeplabv3_mobilenet_v3_large, lraspp_mobilenet_v3_large

from pipeline_lib.models.depthwise import use_fast_depthwise_backward


class LRASPPMobileNetV3(nn.Module):
    """LR-ASPP: its head fuses stride-16 features into the stride-8 ones, so logits are at stride 8.

    ``forward(x)`` → ``{"out": (N, C, ceil(H/8), ceil(W/8))}``; torchvision has no aux head here.
    """

    output_stride = 8
    has_aux_head = False

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        # weights_backbone defaults to an ImageNet download in torchvision: pass None explicitly.
        reference = lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=num_classes)
        self.backbone = use_fast_depthwise_backward(reference.backbone)  # {"low": stride 8, "high": stride 16}
        self.classifier = reference.classifier

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return {"out": self.classifier(self.backbone(x))}


class DeepLabV3MobileNetV3(nn.Module):
    """DeepLabV3 (ASPP rates 12/24/36) on the stride-16 features: logits at stride 16.

    ``forward(x)`` → ``{"out": (N, C, ceil(H/16), ceil(W/16))}``, plus in training mode with the
    aux head ``"aux"``: torchvision's FCN head on the stride-8 features, so
    (N, C, ceil(H/8), ceil(W/8)) — a different size from ``"out"``; resize each to the labels.
    """

    output_stride = 16

    def __init__(self, num_classes: int, aux_head: bool = True) -> None:
        super().__init__()
        reference = deeplabv3_mobilenet_v3_large(
            weights=None, weights_backbone=None, num_classes=num_classes, aux_loss=aux_head
        )
        self.backbone = use_fast_depthwise_backward(reference.backbone)  # {"out": stride 16[, "aux": stride 8]}
        self.classifier = reference.classifier
        self.aux_classifier = reference.aux_classifier
        self.has_aux_head = aux_head

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        features = self.backbone(x)
        result = {"out": self.classifier(features["out"])}
        if self.training and self.aux_classifier is not None:
            result["aux"] = self.aux_classifier(features["aux"])
        return result
