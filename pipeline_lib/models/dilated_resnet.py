"""A torchvision ResNet trunk dilated to output stride 8, whose state-dict keys are torchvision's.

Both PSPNet and DeepLabv2 use this trunk. Keeping torchvision's stem (7×7 conv) and module names
means a torchvision ImageNet checkpoint (``resnet50-*.pth``) loads into it directly, minus ``fc.*``.

The deep-stem variant is the ResNet of the PSPNet reference code (hszhao/semseg) that DARS trains: three
3×3 convolutions (3→64 stride 2, 64→64, 64→128) in place of the 7×7 one, layer1 fed 128 channels, and
layer3 / layer4 dilated 2 / 4 from their first block on (torchvision's ``replace_stride_with_dilation``
leaves each first block at the previous dilation). Its keys are those of semseg's ImageNet
``resnet50_v2.pth`` / ``resnet101_v2.pth`` (``conv1``-``conv3``, ``bn1``-``bn3``, ``layer1``…), which load
into it minus ``fc.*``; torchvision's weights do not fit it.
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


def dilate_bottlenecks(layer: nn.Sequential, dilation: int) -> None:
    """semseg's dilation of a Bottleneck layer, in place: every 3×3 conv (``conv2``) at stride 1 with the
    given dilation, the shortcut's 1×1 conv at stride 1."""
    for name, module in layer.named_modules():
        if name.endswith("conv2"):
            module.stride, module.dilation, module.padding = (1, 1), (dilation, dilation), (dilation, dilation)
        elif name.endswith("downsample.0"):
            module.stride = (1, 1)


def _conv_bn(in_channels: int, out_channels: int, stride: int) -> tuple[nn.Conv2d, nn.BatchNorm2d]:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(out_channels)


class DilatedResNet(nn.Module):
    """ResNet-18/50/101 without avgpool/fc; layer3 dilated by 2 and layer4 by 4 (stride 8 overall).

    ``forward`` returns ``(layer3_features, layer4_features)``, both of spatial size
    ``ceil(H/8) × ceil(W/8)`` (the stem conv, the max-pool and layer2 each halve with ceil).
    ``deep_stem`` (ResNet-50/101 only): the semseg variant described in the module docstring.
    """

    output_stride = 8

    def __init__(self, depth: int, deep_stem: bool = False) -> None:
        super().__init__()
        self.deep_stem = deep_stem
        if deep_stem:
            if depth not in (50, 101):
                raise ValueError(f"the deep-stem ResNet has depth 50 or 101, got {depth}")
            net = (resnet50 if depth == 50 else resnet101)(weights=None)
            dilate_bottlenecks(net.layer3, 2)
            dilate_bottlenecks(net.layer4, 4)
            first = net.layer1[0]  # fed the stem's 128 channels instead of 64
            first.conv1 = nn.Conv2d(128, first.conv1.out_channels, 1, bias=False)
            first.downsample[0] = nn.Conv2d(128, first.downsample[0].out_channels, 1, bias=False)
            self.conv1, self.bn1 = _conv_bn(3, 64, 2)
            self.conv2, self.bn2 = _conv_bn(64, 64, 1)
            self.conv3, self.bn3 = _conv_bn(64, 128, 1)
            for conv in (self.conv1, self.conv2, self.conv3):  # torchvision's ResNet init for its convolutions
                nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
            self.relu, self.maxpool = net.relu, net.maxpool
            self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
            self.layer3_channels, self.out_channels = 1024, 2048
            return
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
        x = self.relu(self.bn1(self.conv1(x)))
        if self.deep_stem:
            x = self.relu(self.bn3(self.conv3(self.relu(self.bn2(self.conv2(x))))))
        x = self.maxpool(x)
        x = self.layer2(self.layer1(x))
        layer3 = self.layer3(x)
        return layer3, self.layer4(layer3)
