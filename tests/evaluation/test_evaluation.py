from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from pipeline_lib.data.classes import ClassSet
from pipeline_lib.data.prepared import Sample, load_spec, read_split, write_prepared
from pipeline_lib.errors import UserError
from pipeline_lib.evaluation.loop import evaluate

CLASSES = ClassSet(("dark", "bright"), ((0, 0, 0), (255, 255, 255)))
CPU = torch.device("cpu")


class RedModel(nn.Module):
    """Predicts "bright" where an 8x8 cell's mean red is above the ImageNet mean, else "dark"."""

    output_stride = 8

    def __init__(self, num_classes: int = 2):
        super().__init__()
        self.pool = nn.AvgPool2d(8)
        self.classify = nn.Conv2d(3, num_classes, 1)
        with torch.no_grad():
            self.classify.weight.zero_()
            self.classify.bias.zero_()
            self.classify.weight[0, 0] = -1.0
            self.classify.weight[1, 0] = 1.0

    def forward(self, x):
        return {"out": self.classify(self.pool(x))}


def save(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def make_dataset(tmp_path: Path) -> Path:
    """Two images the model gets right except for one mislabelled 4x4 block; one ignored row (see EXPECTED)."""
    root = tmp_path / "raw"
    # a: 16x24, bright for x >= 8; the top row is ignored.
    a = np.zeros((16, 24, 3), np.uint8)
    a[:, 8:, 0] = 255
    a_label = np.where(np.arange(24)[None, :] >= 8, 1, 0).repeat(16, 0).astype(np.uint8)
    a_label[0] = 255
    # b: 24x16, bright for y < 8; a 4x4 block of dark pixels is labelled bright.
    b = np.zeros((24, 16, 3), np.uint8)
    b[:8, :, 0] = 255
    b_label = np.where(np.arange(24)[:, None] < 8, 1, 0).repeat(16, 1).astype(np.uint8)
    b_label[16:20, 0:4] = 1
    samples = [Sample("a", save(root / "img" / "a.png", a), save(root / "lbl" / "a.png", a_label)),
               Sample("b", save(root / "img" / "b.png", b), save(root / "lbl" / "b.png", b_label))]
    prepared = tmp_path / "prepared"
    write_prepared(prepared, "toy", root, CLASSES, {"labeled": samples, "unlabeled": samples, "val": samples})
    return prepared


# a: dark 15*8 = 120, bright 15*16 = 240 (row 0 ignored); b: bright 8*16 = 128, dark 16*16 - 16 = 240,
# and 16 bright-labelled pixels predicted dark.
EXPECTED = np.array([[120 + 240, 0], [16, 240 + 128]])


@pytest.fixture
def dataset(tmp_path):
    prepared = make_dataset(tmp_path)
    spec = load_spec(prepared)
    return read_split(prepared, "val", spec), spec


def test_evaluate_counts_by_hand(dataset):
    samples, spec = dataset
    metrics, confusion = evaluate(RedModel(), samples, spec, CPU, tail_classes=[1], progress=False)
    np.testing.assert_array_equal(confusion, EXPECTED)
    assert metrics["images"] == 2
    assert metrics["evaluated_pixels"] == EXPECTED.sum()
    assert metrics["iou"]["dark"] == pytest.approx(360 / 376)
    assert metrics["iou"]["bright"] == pytest.approx(368 / 384)
    assert metrics["miou"] == pytest.approx((360 / 376 + 368 / 384) / 2)
    assert metrics["tail_miou"] == pytest.approx(368 / 384)
    assert metrics["head_miou"] == pytest.approx(360 / 376)
    assert metrics["pixel_accuracy"] == pytest.approx(728 / 744)


@pytest.mark.parametrize("mode,crop,flip", [("sliding", 16, False), ("sliding", 8, True), ("whole", None, True)])
def test_modes_agree_on_a_cell_local_model(dataset, mode, crop, flip):
    samples, spec = dataset
    _, confusion = evaluate(RedModel(), samples, spec, CPU, mode=mode, crop_size=crop, flip=flip,
                            progress=True)
    np.testing.assert_array_equal(confusion, EXPECTED)


def test_training_mode_is_restored(dataset):
    samples, spec = dataset
    model = RedModel().train()
    evaluate(model, samples, spec, CPU, progress=False)
    assert model.training
    evaluate(model.eval(), samples, spec, CPU, progress=False)
    assert not model.training


def test_errors_name_the_problem(dataset, tmp_path):
    samples, spec = dataset
    with pytest.raises(UserError, match="empty"):
        evaluate(RedModel(), [], spec, CPU, progress=False)
    with pytest.raises(UserError, match="a.png: evaluation sample has no label"):
        evaluate(RedModel(), [Sample("a", samples[0].image, None)], spec, CPU, progress=False)
    small = save(tmp_path / "small.png", np.zeros((8, 8), np.uint8))
    with pytest.raises(UserError, match="small.png: label size 8x8 differs"):
        evaluate(RedModel(), [Sample("a", samples[0].image, small)], spec, CPU, progress=False)
    with pytest.raises(UserError, match="class 2 but dataset 'toy' has 2 classes"):
        model = RedModel(num_classes=3)
        with torch.no_grad():
            model.classify.bias[2] = 100.0
        evaluate(model, samples, spec, CPU, progress=False)
