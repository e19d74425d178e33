"""Segmentation models: output stride, aux heads, local backbone weights, parameter groups."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torchvision.models import mobilenet_v3_large, resnet18
from torchvision.models.segmentation import deeplabv3_mobilenet_v3_large, lraspp_mobilenet_v3_large

from pipeline_lib.errors import UserError
from pipeline_lib.models.build import ARCHITECTURES, build_model, parameter_groups

NUM_CLASSES = 5
EXPECTED_STRIDE = {
    "pspnet_resnet18": 8,
    "pspnet_resnet50": 8,
    "pspnet_resnet101": 8,
    "pspnet_resnet50_deep_stem": 8,
    "pspnet_resnet101_deep_stem": 8,
    "deeplabv2_resnet101": 8,
    "deeplabv2_resnet101_dars": 8,
    "lraspp_mobilenet_v3_large": 8,
    "deeplabv3_mobilenet_v3_large": 16,
}
EXPECTED_AUX = {"pspnet_resnet18", "pspnet_resnet50", "pspnet_resnet101", "pspnet_resnet50_deep_stem",
                "pspnet_resnet101_deep_stem", "deeplabv3_mobilenet_v3_large"}
SMALL_ARCHS = ("pspnet_resnet18", "lraspp_mobilenet_v3_large", "deeplabv3_mobilenet_v3_large")


def count_parameters(model: torch.nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters (all, or only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


@pytest.fixture(scope="module")
def models() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    return {arch: build_model(arch, NUM_CLASSES) for arch in ARCHITECTURES}


@pytest.fixture(scope="module")
def resnet18_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    torch.manual_seed(1)
    state = resnet18(weights=None).state_dict()
    path = tmp_path_factory.mktemp("weights") / "resnet18-local.pth"
    torch.save(state, path)
    return path, state


@pytest.fixture(scope="module")
def mobilenet_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    torch.manual_seed(2)
    state = mobilenet_v3_large(weights=None).state_dict()
    path = tmp_path_factory.mktemp("weights") / "mobilenet_v3_large-local.pth"
    torch.save(state, path)
    return path, state


def test_architectures_are_the_documented_ones() -> None:
    assert set(ARCHITECTURES) == set(EXPECTED_STRIDE)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_output_stride_and_aux_by_mode(models: dict, arch: str) -> None:
    model = models[arch]
    assert model.output_stride == EXPECTED_STRIDE[arch]
    assert model.has_aux_head == (arch in EXPECTED_AUX)
    x = torch.randn(2, 3, 65, 49)  # sides 8k + 1, as the reference crops (the DARS DeepLabv2's ceil-mode pool)
    stride = model.output_stride
    model.train()
    train_out = model(x)
    assert train_out["out"].shape == (2, NUM_CLASSES, math.ceil(65 / stride), math.ceil(49 / stride))
    assert ("aux" in train_out) == (arch in EXPECTED_AUX)
    if "aux" in train_out:
        assert train_out["aux"].shape[:2] == (2, NUM_CLASSES)
    model.eval()
    with torch.no_grad():
        eval_out = model(x)
    assert set(eval_out) == {"out"}
    assert eval_out["out"].shape == train_out["out"].shape


@settings(max_examples=6, deadline=None)
@given(
    arch=st.sampled_from(("pspnet_resnet18", "lraspp_mobilenet_v3_large", "deeplabv3_mobilenet_v3_large")),
    height=st.integers(17, 72),
    width=st.integers(17, 72),
)
def test_native_size_is_ceil_of_input_over_stride(models: dict, arch: str, height: int, width: int) -> None:
    model = models[arch].eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, height, width))["out"]
    stride = model.output_stride
    assert out.shape[-2:] == (math.ceil(height / stride), math.ceil(width / stride))


def test_deeplabv3_aux_is_at_stride_8(models: dict) -> None:
    model = models["deeplabv3_mobilenet_v3_large"].train()
    out = model(torch.randn(2, 3, 64, 64))
    assert out["aux"].shape[-2:] == (8, 8)


@pytest.mark.parametrize("arch", ["pspnet_resnet18", "deeplabv3_mobilenet_v3_large"])
def test_aux_head_can_be_switched_off(arch: str) -> None:
    model = build_model(arch, NUM_CLASSES, aux_head=False).train()
    assert not model.has_aux_head
    assert set(model(torch.randn(2, 3, 32, 32))) == {"out"}
    assert not any("aux" in name for name, _ in model.named_parameters())


@pytest.mark.parametrize(
    "arch, reference_builder",
    [("lraspp_mobilenet_v3_large", lraspp_mobilenet_v3_large), ("deeplabv3_mobilenet_v3_large", deeplabv3_mobilenet_v3_large)],
)
def test_mobile_wrappers_equal_torchvision_before_its_upsampling(arch: str, reference_builder) -> None:
    torch.manual_seed(3)
    aux = {"aux_loss": True} if arch.startswith("deeplabv3") else {}
    reference = reference_builder(weights=None, weights_backbone=None, num_classes=NUM_CLASSES, **aux).eval()
    model = build_model(arch, NUM_CLASSES).eval()
    model.load_state_dict(reference.state_dict())  # same module names as torchvision's
    x = torch.randn(1, 3, 48, 56)
    with torch.no_grad():
        native = model(x)["out"]
        expected = reference(x)["out"]
    upsampled = F.interpolate(native, size=x.shape[-2:], mode="bilinear", align_corners=False)
    torch.testing.assert_close(upsampled, expected)


def test_pspnet_resnet18_loads_a_local_torchvision_checkpoint(resnet18_checkpoint: tuple[Path, dict]) -> None:
    path, state = resnet18_checkpoint
    model = build_model("pspnet_resnet18", NUM_CLASSES, pretrained_backbone=str(path))
    backbone = model.backbone.state_dict()
    for key in ("conv1.weight", "layer3.0.downsample.0.weight", "layer4.1.conv2.weight", "bn1.running_var"):
        assert torch.equal(backbone[key], state[key])
    # The dilated layers keep their weights' shapes; only stride/dilation changed.
    assert model.backbone.layer4[0].conv1.dilation == (4, 4)
    assert model.backbone.layer4[0].conv1.stride == (1, 1)


def test_checkpoint_without_num_batches_tracked_and_wrapped_loads(tmp_path: Path, resnet18_checkpoint) -> None:
    # torchvision's own ResNet files predate num_batches_tracked; DataParallel adds "module.".
    _, state = resnet18_checkpoint
    legacy = {f"module.{k}": v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "legacy.pth"
    torch.save({"state_dict": legacy}, path)
    model = build_model("pspnet_resnet18", NUM_CLASSES, pretrained_backbone=path)
    assert torch.equal(model.backbone.layer2[0].conv1.weight, state["layer2.0.conv1.weight"])


@pytest.mark.parametrize("arch", ["lraspp_mobilenet_v3_large", "deeplabv3_mobilenet_v3_large"])
def test_mobile_models_load_a_local_mobilenet_checkpoint(arch: str, mobilenet_checkpoint) -> None:
    path, state = mobilenet_checkpoint
    model = build_model(arch, NUM_CLASSES, pretrained_backbone=path)
    backbone = model.backbone.state_dict()
    for key in ("0.0.weight", "16.0.weight", "7.block.0.1.running_mean"):
        assert torch.equal(backbone[key], state[f"features.{key}"])


@pytest.mark.parametrize("value", [None, "none", "None", ""])
def test_no_pretrained_backbone_means_random_init(value: str | None) -> None:
    model = build_model("lraspp_mobilenet_v3_large", NUM_CLASSES, pretrained_backbone=value)
    assert count_parameters(model) > 0


def test_missing_file_is_a_user_error(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "resnet50.pth"
    with pytest.raises(UserError, match="not found.*resnet50.pth"):
        build_model("pspnet_resnet18", NUM_CLASSES, pretrained_backbone=path)


def test_file_that_is_not_a_checkpoint_is_a_user_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.pth"
    path.write_text("not a checkpoint")
    with pytest.raises(UserError, match="notes.pth"):
        build_model("pspnet_resnet18", NUM_CLASSES, pretrained_backbone=path)


def test_wrong_backbone_checkpoint_names_missing_and_unexpected_keys(resnet18_checkpoint, mobilenet_checkpoint) -> None:
    resnet_path, _ = resnet18_checkpoint
    mobilenet_path, _ = mobilenet_checkpoint
    with pytest.raises(UserError, match=r"mobilenet_v3_large-local\.pth.*missing keys: .*unexpected keys: .*features\."):
        build_model("pspnet_resnet18", NUM_CLASSES, pretrained_backbone=mobilenet_path)
    with pytest.raises(UserError, match=r"resnet18-local\.pth.*missing keys: .*unexpected keys: .*conv1\.weight"):
        build_model("lraspp_mobilenet_v3_large", NUM_CLASSES, pretrained_backbone=resnet_path)


def test_resnet18_checkpoint_into_resnet50_reports_mismatch(models: dict, resnet18_checkpoint) -> None:
    path, _ = resnet18_checkpoint
    with pytest.raises(UserError) as error:
        build_model("pspnet_resnet50", NUM_CLASSES, pretrained_backbone=path)
    message = str(error.value)
    assert str(path) in message
    assert "missing keys" in message and "layer1.0.conv3.weight" in message
    assert "shape mismatches" in message


def test_one_unexpected_or_reshaped_key_is_rejected(tmp_path: Path, resnet18_checkpoint) -> None:
    _, state = resnet18_checkpoint
    extra = dict(state, **{"layer5.weight": torch.zeros(1)})
    torch.save(extra, tmp_path / "extra.pth")
    with pytest.raises(UserError, match=r"unexpected keys: 1 \(e\.g\. layer5\.weight\)"):
        build_model("pspnet_resnet18", NUM_CLASSES, pretrained_backbone=tmp_path / "extra.pth")
    reshaped = dict(state, **{"conv1.weight": torch.zeros(64, 3, 3, 3)})
    torch.save(reshaped, tmp_path / "reshaped.pth")
    with pytest.raises(UserError, match=r"shape mismatches.*conv1\.weight"):
        build_model("pspnet_resnet18", NUM_CLASSES, pretrained_backbone=tmp_path / "reshaped.pth")


def test_unknown_architecture_lists_the_choices() -> None:
    with pytest.raises(UserError, match="'pspnet_resnet34'.*pspnet_resnet50.*lraspp_mobilenet_v3_large"):
        build_model("pspnet_resnet34", NUM_CLASSES)


@pytest.mark.parametrize("num_classes", [0, -3, 2.5, True])
def test_bad_class_count_is_a_user_error(num_classes) -> None:
    with pytest.raises(UserError, match="num_classes"):
        build_model("lraspp_mobilenet_v3_large", num_classes)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_parameter_groups_cover_each_trainable_parameter_once(models: dict, arch: str) -> None:
    model = models[arch]
    groups = parameter_groups(model, base_lr=0.01, head_lr_multiplier=10.0)
    by_name = {g["name"]: g for g in groups}
    assert set(by_name) == {"backbone", "head"}
    assert by_name["backbone"]["lr"] == by_name["backbone"]["initial_lr"] == pytest.approx(0.01)
    assert by_name["head"]["lr"] == by_name["head"]["initial_lr"] == pytest.approx(0.1)
    grouped = [id(p) for g in groups for p in g["params"]]
    assert len(grouped) == len(set(grouped))
    assert set(grouped) == {id(p) for p in model.parameters() if p.requires_grad}
    at_base_lr = model.base_lr_parameters() if hasattr(model, "base_lr_parameters") else model.backbone.parameters()
    assert {id(p) for p in by_name["backbone"]["params"]} == {id(p) for p in at_base_lr if p.requires_grad}
    assert sum(p.numel() for g in groups for p in g["params"]) == count_parameters(model, trainable_only=True)


def test_frozen_parameters_are_left_out_and_sgd_accepts_groups() -> None:
    model = build_model("lraspp_mobilenet_v3_large", NUM_CLASSES)
    for parameter in model.backbone.parameters():
        parameter.requires_grad_(False)
    groups = parameter_groups(model, base_lr=0.002, head_lr_multiplier=10.0)
    assert [g["name"] for g in groups] == ["head"]
    assert count_parameters(model, trainable_only=True) == sum(p.numel() for p in groups[0]["params"])
    assert count_parameters(model, trainable_only=True) < count_parameters(model)
    optimizer = torch.optim.SGD(groups, lr=0.002, momentum=0.9)
    assert optimizer.param_groups[0]["initial_lr"] == pytest.approx(0.02)


@pytest.mark.parametrize("arch", SMALL_ARCHS)
def test_seeded_construction_is_deterministic(arch: str) -> None:
    torch.manual_seed(7)
    first = build_model(arch, NUM_CLASSES).state_dict()
    torch.manual_seed(7)
    second = build_model(arch, NUM_CLASSES).state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_pspnet_resnet50_has_reference_widths(models: dict) -> None:
    model = models["pspnet_resnet50"]
    assert model.ppm.out_channels == 4096
    assert model.classifier[0].in_channels == 4096 and model.classifier[0].out_channels == 512
    assert model.aux_classifier[0].in_channels == 1024 and model.aux_classifier[0].out_channels == 256


def test_deep_stem_pspnet_is_the_reference_resnet(models: dict) -> None:
    """Three 3×3 stem convolutions (the last to 128 channels), layer3/layer4 dilated from their first block."""
    backbone = models["pspnet_resnet50_deep_stem"].backbone
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride) for c in (backbone.conv1, backbone.conv2,
                                                                                backbone.conv3)] == \
        [(3, 64, (3, 3), (2, 2)), (64, 64, (3, 3), (1, 1)), (64, 128, (3, 3), (1, 1))]
    assert backbone.layer1[0].conv1.in_channels == backbone.layer1[0].downsample[0].in_channels == 128
    assert [block.conv2.dilation for block in backbone.layer3] == [(2, 2)] * 6
    assert [block.conv2.dilation for block in backbone.layer4] == [(4, 4)] * 3
    assert backbone.layer3[0].downsample[0].stride == backbone.layer4[0].conv2.stride == (1, 1)


def test_deep_stem_pspnet_output_at_the_reference_crop(models: dict) -> None:
    model = models["pspnet_resnet50_deep_stem"].train()
    out = model(torch.randn(2, 3, 361, 361))
    assert out["out"].shape == out["aux"].shape == (2, NUM_CLASSES, 46, 46)  # (361 - 1) / 8 + 1


def test_deep_stem_loads_semseg_format_weights_and_refuses_torchvision_ones(tmp_path: Path, models: dict) -> None:
    # semseg's resnet50_v2.pth: conv1-3/bn1-3 stem, torchvision names elsewhere, an fc head.
    torch.manual_seed(4)
    reference = build_model("pspnet_resnet50_deep_stem", NUM_CLASSES).backbone.state_dict()
    semseg = {key: torch.randn_like(value) if value.is_floating_point() else value for key, value in reference.items()
              if not key.endswith("num_batches_tracked")}
    semseg.update({"fc.weight": torch.zeros(1000, 2048), "fc.bias": torch.zeros(1000)})
    torch.save(semseg, tmp_path / "resnet50_v2.pth")
    model = build_model("pspnet_resnet50_deep_stem", NUM_CLASSES, pretrained_backbone=tmp_path / "resnet50_v2.pth")
    loaded = model.backbone.state_dict()
    for key in ("conv1.weight", "conv3.weight", "bn3.running_mean", "layer1.0.conv1.weight", "layer4.2.conv3.weight"):
        assert torch.equal(loaded[key], semseg[key])
    torch.save(models["pspnet_resnet50"].backbone.state_dict(), tmp_path / "resnet50-torchvision.pth")
    with pytest.raises(UserError, match=r"resnet50-torchvision\.pth does not match.*conv2\.weight"):
        build_model("pspnet_resnet50_deep_stem", NUM_CLASSES, pretrained_backbone=tmp_path / "resnet50-torchvision.pth")


def test_dars_deeplabv2_is_the_authors_variant(models: dict) -> None:
    model = models["deeplabv2_resnet101_dars"]
    backbone = model.backbone
    assert backbone.maxpool.ceil_mode
    assert backbone.layer2[0].conv1.stride == (2, 2) and backbone.layer2[0].conv2.stride == (1, 1)
    assert all(block.conv2.dilation == (2, 2) for block in backbone.layer3)
    assert all(block.conv2.dilation == (4, 4) for block in backbone.layer4)
    batch_norms = [m for m in backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert batch_norms and not any(p.requires_grad for m in batch_norms for p in m.parameters())
    # Their ASPP's loop returns after its second branch: the logits are the d=6 plus the d=12 branch.
    assert [branch.dilation for branch in model.classifier] == [(6, 6), (12, 12)]
    model.eval()
    x = torch.randn(1, 3, 361, 361)
    with torch.no_grad():
        out = model(x)["out"]
        features = backbone(x)
    assert out.shape == (1, NUM_CLASSES, 46, 46)
    torch.testing.assert_close(out, model.classifier[0](features) + model.classifier[1](features))
    # Their lr split: the stem and layer1-3 at the base lr; layer4 with the classifier at ×10.
    groups = {g["name"]: {id(p) for p in g["params"]} for g in parameter_groups(model, 0.002, 10.0)}
    assert {id(p) for p in backbone.layer4.parameters() if p.requires_grad} <= groups["head"]
    assert {id(p) for p in backbone.layer3.parameters() if p.requires_grad} <= groups["backbone"]


def test_dars_deeplabv2_loads_torchvision_resnet101_weights(tmp_path: Path) -> None:
    from torchvision.models import resnet101

    torch.manual_seed(5)
    state = resnet101(weights=None).state_dict()
    torch.save(state, tmp_path / "resnet101-local.pth")
    model = build_model("deeplabv2_resnet101_dars", NUM_CLASSES, pretrained_backbone=tmp_path / "resnet101-local.pth")
    loaded = model.backbone.state_dict()
    assert all(torch.equal(loaded[key], state[key]) for key in ("conv1.weight", "layer2.0.conv1.weight",
                                                               "layer4.2.bn3.bias"))
