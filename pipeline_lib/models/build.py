"""Model factory: build a segmentation network by name, and its SGD parameter groups.

Every model follows one interface, which training, inference and the pseudo-label store rely on:

- ``model(x)`` with x (N, 3, H, W) float returns a dict; ``"out"`` holds logits (N, C, h, w) at
  the model's native output stride, *before* any upsampling to the input size. In training mode,
  models with an aux head also return ``"aux"`` (its own native stride; resize each to the labels).
- ``model.output_stride``: 8 for PSPNet, DeepLabv2 and LR-ASPP, 16 for DeepLabV3-MobileNetV3;
  h = ceil(H / output_stride), w = ceil(W / output_stride).
- ``model.has_aux_head``: whether ``"aux"`` appears in training mode.
- ``model.backbone``: the ImageNet-pretrainable part; everything else is a newly initialised head.

Random initialisation draws from torch's global generator: seed it before ``build_model`` for
reproducible weights.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from pipeline_lib.errors import UserError

if TYPE_CHECKING:
    from torch import nn


# The model modules (and torch with them) load only when a model is built: `dars models` and the
# parameter checks list the architectures without importing torch.
def _pspnet(depth: int) -> Callable[[int, bool], nn.Module]:
    def build(num_classes: int, aux_head: bool) -> nn.Module:
        from pipeline_lib.models.pspnet import PSPNet

        return PSPNet(depth, num_classes, aux_head)
    return build


def _deeplabv2(num_classes: int, aux_head: bool) -> nn.Module:
    from pipeline_lib.models.deeplabv2 import DeepLabV2

    return DeepLabV2(num_classes)


def _lraspp(num_classes: int, aux_head: bool) -> nn.Module:
    from pipeline_lib.models.mobilenet import LRASPPMobileNetV3

    return LRASPPMobileNetV3(num_classes)


def _deeplabv3_mobilenet(num_classes: int, aux_head: bool) -> nn.Module:
    from pipeline_lib.models.mobilenet import DeepLabV3MobileNetV3

    return DeepLabV3MobileNetV3(num_classes, aux_head)


# For each architecture: a constructor (num_classes, aux_head) and how a torchvision
# classification checkpoint maps onto its backbone (key prefix to strip, classifier keys to drop).
_RESNET_CHECKPOINT = ("", ("fc.",))
_MOBILENET_CHECKPOINT = ("features.", ("classifier.",))
_REGISTRY: dict[str, tuple[Callable[[int, bool], nn.Module], tuple[str, tuple[str, ...]]]] = {
    "pspnet_resnet18": (_pspnet(18), _RESNET_CHECKPOINT),
    "pspnet_resnet50": (_pspnet(50), _RESNET_CHECKPOINT),
    "pspnet_resnet101": (_pspnet(101), _RESNET_CHECKPOINT),
    "deeplabv2_resnet101": (_deeplabv2, _RESNET_CHECKPOINT),
    "lraspp_mobilenet_v3_large": (_lraspp, _MOBILENET_CHECKPOINT),
    "deeplabv3_mobilenet_v3_large": (_deeplabv3_mobilenet, _MOBILENET_CHECKPOINT),
}

ARCHITECTURES: tuple[str, ...] = tuple(_REGISTRY)


def _wants_pretrained(pretrained_backbone: str | os.PathLike | None) -> bool:
    return pretrained_backbone is not None and str(pretrained_backbone).strip().lower() not in ("", "none")


def build_model(
    arch: str,
    num_classes: int,
    pretrained_backbone: str | os.PathLike | None = None,
    aux_head: bool = True,
) -> nn.Module:
    """Build ``arch`` with ``num_classes`` outputs.

    ``pretrained_backbone``: None, "" or "none" for random initialisation; otherwise the path of a
    local torchvision classification checkpoint of the matching backbone (``resnet{18,50,101}-*.pth``
    or ``mobilenet_v3_large-*.pth``). Nothing is downloaded. ``aux_head`` is ignored by
    architectures without one (DeepLabv2, LR-ASPP).
    """
    if arch not in _REGISTRY:
        raise UserError(f"unknown model architecture {arch!r}; choose one of: {', '.join(ARCHITECTURES)}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise UserError(f"num_classes must be a positive integer, got {num_classes!r}")
    constructor, (source_prefix, ignored_prefixes) = _REGISTRY[arch]
    model = constructor(num_classes, aux_head)
    if _wants_pretrained(pretrained_backbone):
        from pipeline_lib.models.backbone_weights import load_backbone_weights

        load_backbone_weights(model.backbone, pretrained_backbone, source_prefix, ignored_prefixes)
    return model


def parameter_groups(model: nn.Module, base_lr: float, head_lr_multiplier: float) -> list[dict]:
    """SGD parameter groups: the pretrained backbone at ``base_lr``, the new heads at ×multiplier.

    Only trainable parameters are included, each exactly once; empty groups are omitted. Each
    group has ``lr`` and ``initial_lr`` (the poly schedule decays from it) and a ``name``.
    """
    backbone_ids = {id(p) for p in model.backbone.parameters()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    groups = [
        ("backbone", [p for p in trainable if id(p) in backbone_ids], base_lr),
        ("head", [p for p in trainable if id(p) not in backbone_ids], base_lr * head_lr_multiplier),
    ]
    return [
        {"name": name, "params": params, "lr": lr, "initial_lr": lr} for name, params, lr in groups if params
    ]
