import math

import numpy as np
import pytest
import torch
from torch import nn

from pipeline_lib.errors import UserError
from pipeline_lib.predict.inference import (
    inference_size,
    logits_at_resolution,
    predict_labels,
    predict_logits,
    resolve_sliding,
    window_offsets,
)
from pipeline_lib.predict.upsample import upsample_logits

NUM_CLASSES = 5


class PoolModel(nn.Module):
    """Each logit cell sees only its own 8x8 pixels: exactly equivariant to shifts by 8 and to mirroring."""

    output_stride = 8

    def __init__(self, num_classes: int = NUM_CLASSES):
        super().__init__()
        self.pool = nn.AvgPool2d(8)  # floor(S / 8) cells, like a model that drops partial cells
        self.classify = nn.Conv2d(3, num_classes, 1)

    def forward(self, x):
        return {"out": self.classify(self.pool(x)), "aux": None}


class ContextModel(nn.Module):
    """A 3x3 pixel convolution before pooling: translation-equivariant except near (window) borders."""

    output_stride = 8

    def __init__(self):
        super().__init__()
        self.features = nn.Conv2d(3, 8, 3, padding=1)
        self.pool = nn.AvgPool2d(8)
        self.classify = nn.Conv2d(8, NUM_CLASSES, 1)

    def forward(self, x):
        return {"out": self.classify(torch.relu(self.pool(self.features(x))))}


class CeilModel(nn.Module):
    """Three stride-2 convolutions: ceil(S / 8) cells, like a ResNet stem."""

    output_stride = 8

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3, 2, 1), nn.Conv2d(4, 4, 3, 2, 1), nn.Conv2d(4, NUM_CLASSES, 3, 2, 1))

    def forward(self, x):
        return {"out": self.body(x)}


def make(model_cls, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return model_cls().eval()


def image(height: int, width: int, seed: int = 1) -> torch.Tensor:
    # Smooth content plus noise, so that neighbouring cells are related but not equal.
    g = torch.Generator().manual_seed(seed)
    y = torch.linspace(0, 3, height).view(1, -1, 1)
    x = torch.linspace(0, 5, width).view(1, 1, -1)
    base = torch.cat([torch.sin(x + y), torch.cos(2 * y - x), torch.sin(x * y / 4)])
    return base + 0.5 * torch.randn(3, height, width, generator=g)


def test_window_offsets_cover_the_grid_flush_to_the_end():
    assert window_offsets(4, 6, 4) == [0]
    assert window_offsets(6, 6, 4) == [0]
    assert window_offsets(10, 4, 3) == [0, 3, 6]
    assert window_offsets(11, 4, 3) == [0, 3, 6, 7]
    for cells, window, step in [(37, 5, 3), (100, 45, 30), (8, 1, 1)]:
        offsets = window_offsets(cells, window, step)
        covered = np.zeros(cells, bool)
        for o in offsets:
            covered[o:o + window] = True
        assert covered.all() and offsets[-1] + window == cells
        assert all(b - a <= step for a, b in zip(offsets, offsets[1:]))


def test_resolve_sliding_defaults_and_alignment():
    assert resolve_sliding(48, None, 8) == (48, 32)  # ceil(2/3 * 48)
    assert resolve_sliding(361, None, 8) == (361, 240)  # ceil(240.67) = 241 -> 240 on the grid
    assert resolve_sliding(361, 361, 8) == (361, 360)
    assert resolve_sliding(16, 3, 8) == (16, 8)  # at least one cell
    with pytest.raises(UserError, match="crop size"):
        resolve_sliding(None, None, 8)
    with pytest.raises(UserError, match="smaller than the output stride"):
        resolve_sliding(4, None, 8)
    with pytest.raises(UserError, match="gaps"):
        resolve_sliding(48, 56, 8)
    with pytest.raises(UserError, match="positive"):
        resolve_sliding(48, 0, 8)


@pytest.mark.parametrize("model_cls", [PoolModel, ContextModel, CeilModel])
@pytest.mark.parametrize("mode,flip", [("whole", False), ("whole", True), ("sliding", False), ("sliding", True)])
def test_logit_shape_is_ceil_of_size_over_stride(model_cls, mode, flip):
    model = make(model_cls)
    for height, width in [(45, 70), (48, 48), (13, 9)]:
        logits = predict_logits(model, image(height, width), mode=mode, crop_size=24, flip=flip)
        assert logits.shape == (NUM_CLASSES, math.ceil(height / 8), math.ceil(width / 8))
        assert logits.dtype == torch.float32 and torch.isfinite(logits).all()


@pytest.mark.parametrize("model_cls", [PoolModel, ContextModel, CeilModel])
def test_sliding_equals_whole_when_one_window_is_the_image(model_cls):
    model = make(model_cls)
    x = image(48, 48)
    whole = predict_logits(model, x, mode="whole")
    torch.testing.assert_close(predict_logits(model, x, mode="sliding", crop_size=48), whole)


def test_sliding_equals_whole_when_the_crop_covers_the_image():
    # The image is padded to the crop; with cell-local logits the padding cannot leak into the image's cells.
    model = make(PoolModel)
    x = image(45, 70)
    torch.testing.assert_close(predict_logits(model, x, mode="sliding", crop_size=96),
                               predict_logits(model, x, mode="whole"))


@pytest.mark.parametrize("crop,stride", [(48, None), (40, 16), (33, 24), (24, 8)])
def test_sliding_equals_whole_for_cell_local_model(crop, stride):
    # Exact equality proves every window lands on the right canvas cells and the averaging is right.
    model = make(PoolModel)
    x = image(100, 131)
    torch.testing.assert_close(predict_logits(model, x, mode="sliding", crop_size=crop, stride=stride),
                               predict_logits(model, x, mode="whole"), rtol=1e-5, atol=1e-5)


def test_sliding_approximates_whole_for_model_with_context():
    # Only pixels at window borders see zero padding instead of their neighbours, so the two
    # agree up to a small error: measured mean |diff| 0.015 (max 0.14) of the logit std, argmax agreement 1.0.
    model = make(ContextModel)
    x = image(120, 176)
    whole = predict_logits(model, x, mode="whole")
    sliding = predict_logits(model, x, mode="sliding", crop_size=48)
    relative = (sliding - whole).abs().mean() / whole.std()
    agreement = (sliding.argmax(0) == whole.argmax(0)).float().mean()
    assert relative < 0.05
    assert agreement > 0.95
    assert not torch.equal(sliding, whole)  # the windows really were used


def test_flip_is_a_no_op_for_a_mirror_symmetric_model():
    # 70 is not a multiple of 8: mirrored cells only coincide because of the padding to the grid.
    model = make(PoolModel)
    x = image(45, 70)
    for mode in ("whole", "sliding"):
        torch.testing.assert_close(predict_logits(model, x, mode=mode, crop_size=32, flip=True),
                                   predict_logits(model, x, mode=mode, crop_size=32), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", ["whole", "sliding"])
def test_flip_averaging_makes_any_model_mirror_equivariant(mode):
    model = make(CeilModel)
    x = image(40, 64)  # grid-aligned width: mirroring the image mirrors the grid exactly
    plain = predict_logits(model, x, mode=mode, crop_size=32)
    assert not torch.allclose(predict_logits(model, x.flip(-1), mode=mode, crop_size=32).flip(-1), plain)
    flipped = predict_logits(model, x, mode=mode, crop_size=32, flip=True)
    mirrored = predict_logits(model, x.flip(-1), mode=mode, crop_size=32, flip=True)
    torch.testing.assert_close(mirrored.flip(-1), flipped, rtol=1e-5, atol=1e-5)


def color_split_model() -> nn.Module:
    """Class 1 where the red channel is positive, class 0 where it is negative."""
    model = PoolModel(num_classes=2)
    with torch.no_grad():
        model.classify.weight.zero_()
        model.classify.bias.zero_()
        model.classify.weight[0, 0] = -1.0
        model.classify.weight[1, 0] = 1.0
    return model.eval()


def test_labels_align_with_pixels_despite_partial_cells():
    # Width 37 = 4 full cells + 5 pixels: mapping the 5-cell grid onto 37 pixels naively would shift
    # the boundary at x = 16 to x = 15.
    x = torch.full((3, 20, 37), -1.0)
    x[0, :, 16:] = 1.0
    labels = predict_labels(color_split_model(), x, (20, 37))
    assert labels.dtype == np.uint8 and labels.shape == (20, 37)
    expected = np.zeros((20, 37), np.uint8)
    expected[:, 16:] = 1
    np.testing.assert_array_equal(labels, expected)


def test_labels_at_another_resolution():
    x = torch.full((3, 32, 64), -1.0)
    x[0, :, 32:] = 1.0
    labels = predict_labels(color_split_model(), x, (64, 128), mode="sliding", crop_size=32, flip=True)
    expected = np.zeros((64, 128), np.uint8)
    expected[:, 64:] = 1
    np.testing.assert_array_equal(labels, expected)


def test_logits_at_resolution_crops_the_padding():
    logits = torch.arange(5.0).view(1, 1, 5).expand(2, 3, 5)
    full = logits_at_resolution(logits, (20, 37), 8)
    assert full.shape == (2, 20, 37)
    torch.testing.assert_close(full, upsample_logits(logits, (24, 40))[:, :20, :37])


def test_upsample_logits_shape_and_constant():
    out = upsample_logits(torch.ones(3, 4, 5), (31, 41))
    assert out.shape == (3, 31, 41)
    torch.testing.assert_close(out, torch.ones(3, 31, 41))


def test_bf16_on_cpu_is_close():
    model = make(ContextModel)
    x = image(48, 64)
    exact = predict_logits(model, x, precision="fp32")
    approx = predict_logits(model, x, precision="bf16")  # bf16 even where the CPU only emulates it
    assert approx.dtype == torch.float32
    assert (approx - exact).abs().max() < 0.05 * exact.abs().max()
    assert not torch.equal(approx, exact)


EPYC_ZEN5 = "vendor_id\t: AuthenticAMD\nflags\t\t: fpu avx2 avx512f avx512_bf16 avx512_vnni\n"
XEON_NO_AMX = "vendor_id\t: GenuineIntel\nflags\t\t: fpu avx2 avx512f avx512_bf16 avx512_fp16\n"
XEON_AMX = "vendor_id\t: GenuineIntel\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"
EPYC_AVX2 = "vendor_id\t: AuthenticAMD\nflags\t\t: fpu avx2\n"


@pytest.mark.parametrize("cpuinfo, native, expected", [
    (EPYC_ZEN5, True, False),     # measured: bf16 1.0x fp32 in the median
    (XEON_NO_AMX, True, False),   # measured: bf16 0.75x fp32
    (XEON_AMX, True, True),
    (EPYC_AVX2, False, False),    # emulated: 10x slower
    (XEON_AMX, False, False),     # a torch whose oneDNN cannot run bf16 natively here
    ("", True, False),            # nothing known (not Linux): fp32
])
def test_auto_precision_on_a_cpu_follows_the_measured_kinds(cpuinfo, native, expected):
    from pipeline_lib import device

    assert device.cpu_prefers_bf16(cpuinfo, native) is expected


def test_auto_resolves_per_cpu_and_forced_precisions_stay(monkeypatch):
    from pipeline_lib import device

    cpu = torch.device("cpu")
    monkeypatch.setattr(device, "cpu_prefers_bf16", lambda: False)
    assert device.resolve_precision(cpu, "auto") == "fp32"
    model = make(ContextModel)
    x = image(48, 64)
    assert torch.equal(predict_logits(model, x, precision="auto"), predict_logits(model, x, precision="fp32"))
    monkeypatch.setattr(device, "cpu_prefers_bf16", lambda: True)
    assert device.resolve_precision(cpu, "auto") == "bf16"
    assert torch.equal(predict_logits(model, x, precision="auto"), predict_logits(model, x, precision="bf16"))
    assert [device.resolve_precision(cpu, p) for p in ("fp32", "bf16", "fp16")] == ["fp32", "bf16", "fp16"]
    with pytest.raises(UserError, match="unknown precision 'fp8'"):
        device.resolve_precision(cpu, "fp8")


def test_deterministic():
    model = make(ContextModel)
    x = image(50, 77)
    a = predict_logits(model, x, mode="sliding", crop_size=32, flip=True)
    b = predict_logits(model, x, mode="sliding", crop_size=32, flip=True)
    assert torch.equal(a, b)


def test_bad_arguments():
    model = make(PoolModel)
    x = image(16, 16)
    with pytest.raises(UserError, match="'tiles'"):
        predict_logits(model, x, mode="tiles")
    with pytest.raises(UserError, match="crop size"):
        predict_logits(model, x, mode="sliding")
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        predict_logits(model, x[None])
    with pytest.raises(TypeError, match="output_stride"):
        predict_logits(nn.Conv2d(3, 2, 1), x)


@pytest.mark.parametrize("size, base, expected", [
    ((1024, 2048), 1024, (512, 1024)),  # Cityscapes at the authors' base size 1024
    ((375, 500), 400, (300, 400)),      # a VOC frame at 400
    ((500, 333), 400, (400, 266)),      # portrait: the height is the long side (266.4 rounds down)
    ((64, 96), None, (64, 96)),
])
def test_inference_size_resizes_the_long_side(size, base, expected):
    assert inference_size(size, base) == expected


@pytest.mark.parametrize("mode, flip", [("whole", False), ("sliding", True)])
def test_base_size_is_inference_on_the_resized_image(mode, flip):
    model = make(ContextModel)
    x = image(48, 96)
    kwargs = dict(mode=mode, crop_size=24, flip=flip)
    logits = predict_logits(model, x, base_size=64, **kwargs)
    resized = torch.nn.functional.interpolate(x[None], size=(32, 64), mode="bilinear", align_corners=False)[0]
    assert logits.shape[-2:] == (4, 8)  # the grid of the 32 x 64 image
    torch.testing.assert_close(logits, predict_logits(model, resized, **kwargs))
    # Labels come back at the label size: the resized image's logits, resized back.
    labels = predict_labels(model, x, (48, 96), base_size=64, **kwargs)
    expected = logits_at_resolution(logits, (32, 64), 8, (48, 96)).argmax(0).to(torch.uint8).numpy()
    assert labels.shape == (48, 96)
    np.testing.assert_array_equal(labels, expected)


@pytest.mark.parametrize("arch, bf16_gpu, expected", [
    ("lraspp_mobilenet_v3_large", True, "fp32"),   # measured on an H200: fp32 1.44-1.54x bf16
    ("pspnet_resnet50", True, "bf16"),             # measured: bf16 1.12x fp32
    ("pspnet_resnet50", False, "fp16"),            # a GPU without bf16
    (None, True, "bf16"),
])
def test_auto_precision_on_a_gpu_follows_the_model(monkeypatch, arch, bf16_gpu, expected):
    from pipeline_lib import device

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: bf16_gpu)
    gpu = torch.device("cuda", 0)
    assert device.resolve_precision(gpu, "auto", arch) == expected
    assert device.resolve_precision(gpu, "bf16", "lraspp_mobilenet_v3_large") == "bf16"  # forced stays
