"""The depthwise convolution's CPU backward: the same gradients as autograd's (against float64), the same
forward, taken only in fp32 on the CPU with gradients, and swapped in without touching the weights."""

import pytest
import torch
from torch import nn

from pipeline_lib.models.build import build_model
from pipeline_lib.models.depthwise import DepthwiseConv2d, use_fast_depthwise_backward

GEOMETRIES = [  # (channels, kernel, stride, padding, dilation, height, width): MobileNetV3's and odd ones
    (16, 3, 1, 1, 1, 12, 12),
    (16, 3, 2, 1, 1, 17, 16),
    (24, 5, 2, 2, 1, 15, 18),
    (32, 5, 1, 4, 2, 8, 8),
    (8, 5, 1, 4, 2, 9, 7),
    (8, 3, 2, 0, 1, 10, 11),
    (8, 3, 1, 2, 2, 6, 7),
]


def depthwise_pair(channels: int, kernel: int, stride: int, padding: int, dilation: int):
    torch.manual_seed(0)
    reference = nn.Conv2d(channels, channels, kernel, stride, padding, dilation, groups=channels, bias=False)
    fast = use_fast_depthwise_backward(nn.Sequential(
        nn.Conv2d(channels, channels, kernel, stride, padding, dilation, groups=channels, bias=False)))[0]
    fast.load_state_dict(reference.state_dict())
    return reference, fast


@pytest.mark.parametrize("channels, kernel, stride, padding, dilation, height, width", GEOMETRIES)
def test_gradients_match_autograd_in_float64(channels, kernel, stride, padding, dilation, height, width):
    reference, fast = depthwise_pair(channels, kernel, stride, padding, dilation)
    assert type(fast) is DepthwiseConv2d
    x = torch.randn(3, channels, height, width)
    x64 = x.double().requires_grad_()
    reference.double()
    out64 = reference(x64)
    grad = torch.randn_like(out64)
    out64.backward(grad)

    x32 = x.clone().requires_grad_()
    out32 = fast(x32)
    assert "_DepthwiseConvolution" in type(out32.grad_fn).__name__
    assert out32.shape == out64.shape
    out32.backward(grad.float())
    torch.testing.assert_close(out32.double(), out64, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x32.grad.double(), x64.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fast.weight.grad.double(), reference.weight.grad, rtol=1e-4, atol=1e-4)


def test_forward_is_the_convolution_itself():
    reference, fast = depthwise_pair(16, 5, 1, 4, 2)
    x = torch.randn(2, 16, 8, 8)
    assert torch.equal(fast(x), reference(x))


def test_backward_is_deterministic():
    _, fast = depthwise_pair(32, 5, 1, 4, 2)
    x = torch.randn(4, 32, 8, 8)
    grads = []
    for _ in range(2):
        fast.zero_grad()
        leaf = x.clone().requires_grad_()
        fast(leaf).square().sum().backward()
        grads.append((leaf.grad, fast.weight.grad.clone()))
    assert all(torch.equal(a, b) for a, b in zip(*grads))


def test_other_precisions_and_inference_take_the_plain_convolution():
    _, fast = depthwise_pair(8, 3, 1, 1, 1)
    x = torch.randn(1, 8, 6, 6, requires_grad=True)
    with torch.no_grad():
        assert fast(x).grad_fn is None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = fast(x)
    assert out.dtype == torch.bfloat16 and "_DepthwiseConvolution" not in type(out.grad_fn).__name__
    assert "_DepthwiseConvolution" not in type(fast.double()(x.double()).grad_fn).__name__


def test_swap_keeps_weights_and_touches_only_depthwise_convolutions():
    torch.manual_seed(0)
    model = build_model("lraspp_mobilenet_v3_large", 5)
    swapped = [m for m in model.modules() if type(m) is DepthwiseConv2d]
    assert len(swapped) == 15  # MobileNetV3-Large's 15 inverted residual blocks, one depthwise conv each
    assert all(m.groups == m.in_channels == m.out_channels for m in swapped)
    torch.manual_seed(0)
    plain = build_model("lraspp_mobilenet_v3_large", 5)
    for module in plain.modules():
        if type(module) is DepthwiseConv2d:
            module.__class__ = nn.Conv2d
    state, plain_state = model.state_dict(), plain.state_dict()
    assert state.keys() == plain_state.keys()
    assert all(torch.equal(state[key], plain_state[key]) for key in state)
    grouped = nn.Conv2d(8, 16, 3, groups=8, bias=False)  # grouped but not depthwise: left alone
    assert type(use_fast_depthwise_backward(nn.Sequential(grouped))[0]) is nn.Conv2d
