"""DeepLabv2 as the DARS authors' code builds it (their ``model/deeplabv2.py``, from AdvSemiSeg), next to the
textbook form in ``deeplabv2.py``.

What differs from the textbook model, each kept because their published numbers come from it:

- Caffe-style ResNet-101: a block's stride sits on its first 1×1 convolution (torchvision's on the 3×3),
  the max-pool rounds up (``ceil_mode``), and layer3 / layer4 are dilated 2 / 4 in every block.
- BatchNorm affine parameters frozen (``requires_grad`` False) everywhere in the ResNet; the running
  statistics still update in training mode.
- Their ASPP creates four branches (d = 6, 12, 18, 24) but its ``forward`` returns inside the loop after
  adding the second one, so the logits are the d = 6 branch plus the d = 12 branch. Only those two are built
  here: the other two never receive a gradient there, so they change nothing (and would be unused
  parameters under DistributedDataParallel). Weights N(0, 0.01), biases as PyTorch initialises them.
- Learning rates (their parameter split): the stem and layer1-3 at the base lr, layer4 and the classifier at
  ×10 — see :meth:`base_lr_parameters`.

Weights: torchvision's ImageNet ``resnet101-*.pth`` loads into the backbone key for key (theirs loads that
file, ``resnet101-5d3b4d8f.pth``). The grid: with the max-pool's ceil mode an input side of 8k + 1 (their
crop 361) gives k + 1 cells, as every model here; other sides may give one extra cell at the far edge,
which inference crops off (the cells before it line up with the others').
"""

from __future__ import annotations

from collections.abc import Iterator

from torch import Tensor, nn
from torchvision.models import resnet101

from pipeline_lib.models.dilated_resnet import dilate_bottlenecks

ASPP_DILATIONS_USED = (6, 12)  # of their (6, 12, 18, 24): see the module docstring


class CaffeResNet101(nn.Module):
    """torchvision's ResNet-101 rearranged as the authors' (module names, hence checkpoint keys, unchanged).

    ``forward`` returns layer4's features (N, 2048, h, w) at output stride 8."""

    output_stride = 8
    out_channels = 2048

    def __init__(self) -> None:
        super().__init__()
        net = resnet101(weights=None)
        self.conv1, self.bn1, self.relu = net.conv1, net.bn1, net.relu
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1, ceil_mode=True)
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        first = self.layer2[0]  # the stride on the 1×1 conv, not the 3×3
        first.conv1.stride, first.conv2.stride = (2, 2), (1, 1)
        dilate_bottlenecks(self.layer3, 2)
        dilate_bottlenecks(self.layer4, 4)
        for module in self.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.requires_grad_(False)
                module.bias.requires_grad_(False)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class DeepLabV2DARS(nn.Module):
    """``forward(x)`` with x (N, 3, H, W) returns ``{"out": (N, C, h, w)}``, h ≥ ceil(H/8) (see above)."""

    output_stride = CaffeResNet101.output_stride
    has_aux_head = False

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.backbone = CaffeResNet101()
        self.classifier = nn.ModuleList(
            nn.Conv2d(self.backbone.out_channels, num_classes, kernel_size=3, padding=d, dilation=d, bias=True)
            for d in ASPP_DILATIONS_USED)
        for branch in self.classifier:
            nn.init.normal_(branch.weight, mean=0.0, std=0.01)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        features = self.backbone(x)
        return {"out": self.classifier[0](features) + self.classifier[1](features)}

    def base_lr_parameters(self) -> Iterator[nn.Parameter]:
        """The parameters trained at the base lr: the stem and layer1-3 (their ``index_split``); layer4 and the
        classifier get ``head_lr_multiplier`` × (pipeline_lib.models.build.parameter_groups)."""
        backbone = self.backbone
        for module in (backbone.conv1, backbone.bn1, backbone.layer1, backbone.layer2, backbone.layer3):
            yield from module.parameters()
