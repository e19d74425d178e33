"""Model factory: build a segmentation network by name, and its SGD parameter groups.

Every model follows one interface, which training, inference and the pseudo-label store rely on:

- ``model(x)`` with x (N, 3, H, W) float returns a dict; ``"out"`` holds logits (N, C, h, w) at
  the model's native output stride, *before* any upsampling to the input size. In training mode,
  models with an aux head also return ``"aux"`` (its own native stride; resize each to the labels).
- ``model.output_stride``: 8 for PSPNet, DeepLabv2 and LR-ASPP, 16 for DeepLabV3-MobileNetV3;
  h = ceil(H / output_stride), w = ceil(W / output_stride).
- ``model.has_aux_head``: whether ``"aux"`` appears in training mode.
- ``model.backbone``: the ImageNet-pretrainable part; everything else is a newly initialised head.
- optionally ``model.base_lr_parameters()``: the parameters at the base lr, where that is not the backbone
  (the DARS DeepLabv2 trains its layer4 at the heads' lr).

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
def _pspnet(depth: int, deep_stem: bool = False) -> Callable[[int, bool], nn.Module]:
    def build(num_classes: int, aux_head: bool) -> nn.Module:
        from pipeline_lib.models.pspnet import PSPNet

        return PSPNet(depth, num_classes, aux_head, deep_stem)
    return build


def _deeplabv2(num_classes: int, aux_head: bool) -> nn.Module:
    from pipeline_lib.models.deeplabv2 import DeepLabV2

    return DeepLabV2(num_classes)


def _deeplabv2_dars(num_classes: int, aux_head: bool) -> nn.Module:
    from pipeline_lib.models.deeplabv2_dars import DeepLabV2DARS

    return DeepLabV2DARS(num_classes)


def _lraspp(num_classes: int, aux_head: bool) -> nn.Module:
    from pipeline_lib.models.mobilenet import LRASPPMobileNetV3

    return LRASPPMobileNetV3(num_classes)


def _deeplabv3_mobilenet(num_classes: int, aux_head: bool) -> nn.Module:
    from pipeline_lib.models.mobilenet import DeepLabV3MobileNetV3

    return DeepLabV3MobileNetV3(num_classes, aux_head)


# For each architecture: a constructor (num_classes, aux_head), how a classification checkpoint maps
# onto its backbone (key prefix to strip, classifier keys to drop) and what `dars models` says of it.
_RESNET_CHECKPOINT = ("", ("fc.",))  # torchvision's resnet*.pth, and semseg's resnet*_v2.pth alike
_MOBILENET_CHECKPOINT = ("features.", ("classifier.",))
_REGISTRY: dict[str, tuple[Callable[[int, bool], nn.Module], tuple[str, tuple[str, ...]], str]] = {
    "pspnet_resnet18": (_pspnet(18), _RESNET_CHECKPOINT, "PSPNet, torchvision ResNet-18 (stem 7x7)"),
    "pspnet_resnet50": (_pspnet(50), _RESNET_CHECKPOINT, "PSPNet, torchvision ResNet-50 (resnet50-*.pth weights)"),
    "pspnet_resnet101": (_pspnet(101), _RESNET_CHECKPOINT, "PSPNet, torchvision ResNet-101"),
    "pspnet_resnet50_deep_stem": (_pspnet(50, deep_stem=True), _RESNET_CHECKPOINT,
                                  "PSPNet, the reference code's deep-stem ResNet-50, as DARS (semseg "
                                  "resnet50_v2.pth weights)"),
    "pspnet_resnet101_deep_stem": (_pspnet(101, deep_stem=True), _RESNET_CHECKPOINT,
                                   "PSPNet, the reference code's deep-stem ResNet-101 (resnet101_v2.pth)"),
    "deeplabv2_resnet101": (_deeplabv2, _RESNET_CHECKPOINT,
                            "DeepLabv2, torchvision ResNet-101, the four ASPP branches (textbook form)"),
    "deeplabv2_resnet101_dars": (_deeplabv2_dars, _RESNET_CHECKPOINT,
                                 "DeepLabv2 as the DARS code: Caffe-style ResNet-101, frozen BatchNorm affine, "
                                 "ASPP d=6+12, layer4 at the heads' lr"),
    "lraspp_mobilenet_v3_large": (_lraspp, _MOBILENET_CHECKPOINT, "LR-ASPP, MobileNetV3-Large (the default)"),
    "deeplabv3_mobilenet_v3_large": (_deeplabv3_mobilenet, _MOBILENET_CHECKPOINT, "DeepLabV3, MobileNetV3-Large"),
}

ARCHITECTURES: tuple[str, ...] = tuple(_REGISTRY)
DESCRIPTIONS: dict[str, str] = {arch: entry[2] for arch, entry in _REGISTRY.items()}


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
    local classification checkpoint of the matching backbone (torchvision's ``resnet{18,50,101}-*.pth``
    or ``mobilenet_v3_large-*.pth``; semseg's ``resnet{50,101}_v2.pth`` for the deep-stem variants).
    Nothing is downloaded. ``aux_head`` is ignored by
    architectures without one (DeepLabv2, LR-ASPP).
    """
    if arch not in _REGISTRY:
        raise UserError(f"unknown model architecture {arch!r}; choose one of: {', '.join(ARCHITECTURES)}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise UserError(f"num_classes must be a positive integer, got {num_classes!r}")
    constructor, (source_prefix, ignored_prefixes), _ = _REGISTRY[arch]
    model = constructor(num_classes, aux_head)
    if _wants_pretrained(pretrained_backbone):
        from pipeline_lib.models.backbone_weights import load_backbone_weights

        load_backbone_weights(model.backbone, pretrained_backbone, source_prefix, ignored_prefixes)
    return model


def parameter_groups(model: nn.Module, base_lr: float, head_lr_multiplier: float) -> list[dict]:
    """SGD parameter groups: the pretrained backbone (or ``model.base_lr_parameters()``) at ``base_lr``, the
    rest at ×multiplier.

    Only trainable parameters are included, each exactly once; empty groups are omitted. Each
    group has ``lr`` and ``initial_lr`` (the poly schedule decays from it) and a ``name``.
    """
    at_base_lr = getattr(model, "base_lr_parameters", None)
    backbone_ids = {id(p) for p in (at_base_lr() if at_base_lr is not None else model.backbone.parameters())}
    trainable = [p for p in model.parameters() if p.requires_grad]
    groups = [
        ("backbone", [p for p in trainable if id(p) in backbone_ids], base_lr),
        ("head", [p for p in trainable if id(p) not in backbone_ids], base_lr * head_lr_multiplier),
    ]
    return [
        {"name": name, "params": params, "lr": lr, "initial_lr": lr} for name, params, lr in groups if params
    ]
