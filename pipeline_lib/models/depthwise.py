"""Depthwise convolutions whose CPU backward pass computes the input gradient with the forward kernel.

On the CPU, oneDNN's backward of a depthwise convolution (MobileNetV3's 3×3 and 5×5, dilated in the last stage)
is far slower than its forward: measured on a 2-core AMD EPYC without AVX-512 (Zen 3, AVX2, torch 2.14.1, fp32,
batch 8 of the default's 128² crops), the input gradient of the dilated 5×5 over 960 channels took 22.8 ms against
1.5 ms for the same arithmetic as a forward convolution. The input gradient of a convolution is the transposed
convolution of the output gradient with the same weights: at stride 1 a forward depthwise convolution with the
kernel flipped, at stride 2 ``conv_transpose2d``, both fast there. The weight gradient stays oneDNN's (none of
the rearrangements tried beat it). LR-ASPP's training step ran 1.2× faster with this on that CPU
(``python -m bench.bench_models --depthwise``).

The gradients are the same sums in another order, so training differs from oneDNN's backward in the last bits
and follows its own exact, seeded course. Only the CPU in fp32 takes this path; under autocast (bf16, fp16) and
on a GPU (cuDNN's depthwise kernels) the module is an ``nn.Conv2d``. Weights and checkpoints are unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class _DepthwiseConvolution(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, stride: tuple[int, int], padding: tuple[int, int],
                dilation: tuple[int, int]) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.geometry = stride, padding, dilation
        return F.conv2d(x, weight, None, stride, padding, dilation, weight.shape[0])

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        x, weight = ctx.saved_tensors
        stride, padding, dilation = ctx.geometry
        channels = weight.shape[0]
        kernel = weight.shape[-2:]
        grad_input = grad_weight = None
        if ctx.needs_input_grad[0]:
            if stride == (1, 1):
                flipped_padding = [d * (k - 1) - p for d, k, p in zip(dilation, kernel, padding)]
                grad_input = F.conv2d(grad_output, weight.flip(-1, -2), None, 1, flipped_padding, dilation, channels)
            else:
                # the rows and columns a strided forward pass skipped at the end still get a (zero) gradient
                output_padding = [x.shape[2 + a] - ((grad_output.shape[2 + a] - 1) * stride[a] - 2 * padding[a]
                                                     + dilation[a] * (kernel[a] - 1) + 1) for a in range(2)]
                grad_input = F.conv_transpose2d(grad_output, weight, None, stride, padding, output_padding,
                                                channels, dilation)
        if ctx.needs_input_grad[1]:
            grad_weight = torch.ops.aten.convolution_backward(
                grad_output, x, weight, None, list(stride), list(padding), list(dilation), False, [0, 0],
                channels, [False, True, False])[1]
        return grad_input, grad_weight, None, None, None


class DepthwiseConv2d(nn.Conv2d):
    """A bias-free depthwise ``nn.Conv2d`` (one filter per channel) with the fast CPU backward above."""

    def forward(self, x: Tensor) -> Tensor:
        if (x.device.type != "cpu" or x.dtype != torch.float32 or torch.is_autocast_enabled("cpu")
                or not torch.is_grad_enabled() or self.padding_mode != "zeros"):
            return super().forward(x)
        return _DepthwiseConvolution.apply(x, self.weight, self.stride, self.padding, self.dilation)


def is_depthwise(module: nn.Module) -> bool:
    return (type(module) is nn.Conv2d and module.groups > 1 and module.groups == module.in_channels
            == module.out_channels and module.bias is None and not isinstance(module.padding, str))


def use_fast_depthwise_backward(model: nn.Module) -> nn.Module:
    """Turn every bias-free depthwise ``nn.Conv2d`` of ``model`` into a DepthwiseConv2d, in place (same
    parameters, same state dict); returns ``model``."""
    for module in model.modules():
        if is_depthwise(module):
            module.__class__ = DepthwiseConv2d
    return model
