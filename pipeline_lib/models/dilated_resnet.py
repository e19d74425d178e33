"""A torchvision ResNet trunk dilated to output stride 8, whose state-dict keys are torchvision's.

Both PSPNet and DeepLabv2 use this trunk. Keeping torchvision's stem (7×7 conv) and module names
means a torchvision ImageNet checkpoint (``resnet50-*.pth``) loads into it directly, minus ``fc.*``.
"""

from __future__ import annotations

from torch import Tensor, nn
from torchvision.models import resnet18, resnet50, resnet101

RESNET_DEPTHS = (18, 50, 101)


def _dilate_basic_blocks(layer: nn.Sequential, dilation: int) -> None:
    """Turn a BasicBlock layer's stride 2 into dilation, in place.

    torchvision's ``replace_stride_with_dilation`` refuses BasicBlocks, so do what the PSPNet
    reference does for its layers: every 3×3 conv gets stride 1 and the given dilation (padding
    = dilation keeps the size), and the 1×1 shortcut conv loses its stride.
    """
    for name, module in layer.named_modules():
        if not isinstance(module, nn.Conv2d):
            continue
        if module.kernel_size == (3, 3):
            module.stride = (1, 1)
            module.dilation = (dilation, dilation)
            module.padding = (dilation, dilation)
        elif name.endswith("downsample.0"):
            module.stride = (1, 1)


class DilatedResNet(nn.Module):
    """ResNet-18/50/101 without avgpool/fc; layer3 dilated by 2 and layer4 by 4 (stride 8 overall).

    ``forward`` returns ``(layer3_features, layer4_features)``, both of spatial size
    ``ceil(H/8) × ceil(W/8)`` (the stem conv, the max-pool and layer2 each halve with ceil).
    """

    output_stride = 8

    def __init__(self, depth: int) -> None:
        super().__init__()
        if depth == 18:
            net = resnet18(weights=None)
            _dilate_basic_blocks(net.layer3, 2)
            _dilate_basic_blocks(net.layer4, 4)
        elif depth in (50, 101):
            builder = resnet50 if depth == 50 else resnet101
            net = builder(weights=None, replace_stride_with_dilation=[False, True, True])
        else:
            raise ValueError(f"ResNet depth must be one of {RESNET_DEPTHS}, got {depth}")
        # Same attribute names as torchvision.models.ResNet so the checkpoint keys line up.
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        expansion = 1 if depth == 18 else 4
        self.layer3_channels = 256 * expansion
        self.out_channels = 512 * expansion

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer2(self.layer1(x))
        layer3 = self.layer3(x)
        return layer3, self.layer4(layer3)
