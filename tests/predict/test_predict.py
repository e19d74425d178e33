"""`dars predict`: label PNGs equal to the model's own prediction, overlays, Cityscapes labelIds, list files,
and one `error:` line (or, with --skip-unreadable, a warning) for an unreadable image."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from typer.testing import CliRunner

from fixtures import make_cityscapes_fixture
from pipeline_lib.data.classes import CITYSCAPES, VOC, cityscapes_label_id_lut, cityscapes_train_id_to_label_id_lut
from pipeline_lib.data.image_files import load_image
from pipeline_lib.models.build import build_model
from pipeline_lib.models.checkpoint import load_checkpoint, save_checkpoint
from pipeline_lib.models.normalization import normalize_image
from pipeline_lib.predict.inference import predict_labels
from pipeline_lib.predict.segment import class_set_named, dataset_id_table
from stages.cli import app

ARCH = "pspnet_resnet18"  # untrained, it still predicts several classes on the fixture (MobileNet heads: one)
PARAMS = {"train": {"crop_size": 32}, "inference": {"mode": "whole", "crop_size": None, "stride": None, "flip": False}}
# The official Cityscapes table (cityscapesscripts' labels.py), written out: labelId of trainId 0..18.
LABEL_ID_OF_TRAIN_ID = (7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """params.yaml, outputs/r2/model.pt (Cityscapes classes) and a Cityscapes tree of three 32x64 images."""
    root = tmp_path_factory.mktemp("predict")
    (root / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    torch.manual_seed(0)
    save_checkpoint(root / "outputs" / "r2" / "model.pt", build_model(ARCH, CITYSCAPES.num_classes), ARCH,
                    list(CITYSCAPES.names), {"round": "r2"})
    make_cityscapes_fixture(root / "cityscapes", cities=("aachen",), images_per_city=2, val_images_per_city=1)
    return root


@pytest.fixture(scope="module")
def model(project):
    return load_checkpoint(project / "outputs" / "r2" / "model.pt")[0].eval()


def images_of(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*_leftImg8bit.png"))


def dars_predict(project: Path, *args) -> tuple[int, str, str]:
    """Run `dars predict --params … --outputs … <args>`; exit code, stdout, stderr (no progress lines)."""
    result = CliRunner().invoke(app, ["predict", "--params", str(project / "params.yaml"),
                                      "--outputs", str(project / "outputs"), *map(str, args)],
                                env={"TQDM_DISABLE": "1"})
    return result.exit_code, result.stdout, result.stderr


def test_a_folder_gives_label_pngs_equal_to_the_models_prediction_and_overlays(project, model, tmp_path):
    source = project / "cityscapes" / "leftImg8bit"
    code, stdout, stderr = dars_predict(project, source, "--out", tmp_path / "out", "--round", "r2")
    assert code == 0, stderr
    assert "3 images segmented" in stdout
    classes_seen = set()
    for image_path in images_of(source):
        stem = image_path.relative_to(source).with_suffix("")  # train/aachen/…_leftImg8bit: the folders mirrored
        image = load_image(image_path)
        with Image.open(tmp_path / "out" / f"{stem}.png") as written:
            assert written.mode == "L" and written.size == (image.shape[1], image.shape[0])
            labels = np.asarray(written)
        assert labels.max() < CITYSCAPES.num_classes
        expected = predict_labels(model, normalize_image(image), image.shape[:2], mode="whole", flip=False)
        np.testing.assert_array_equal(labels, expected)
        with Image.open(tmp_path / "out" / f"{stem}_overlay.png") as overlay:
            assert overlay.mode == "RGB" and overlay.size == written.size
        classes_seen.update(np.unique(labels).tolist())
    assert len(classes_seen) > 1  # the comparison above is not one of constant maps


def test_options_override_the_inference_section(project, model, tmp_path):
    image_path = images_of(project / "cityscapes" / "leftImg8bit")[0]
    # sliding without a crop in params.yaml or on the command line: train.crop_size, as in the pipeline
    code, _, stderr = dars_predict(project, image_path, "--out", tmp_path, "--model",
                                   project / "outputs" / "r2" / "model.pt", "--mode", "sliding", "--flip",
                                   "--no-overlay")
    assert code == 0, stderr
    image = load_image(image_path)
    expected = predict_labels(model, normalize_image(image), image.shape[:2], mode="sliding", crop_size=32,
                              flip=True)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / f"{image_path.stem}.png")), expected)
    assert not list(tmp_path.glob("*_overlay.png"))


def test_the_label_id_table_by_hand():
    table = cityscapes_train_id_to_label_id_lut()
    assert table[:19].tolist() == list(LABEL_ID_OF_TRAIN_ID)
    assert table[255] == 0  # "unlabeled"
    np.testing.assert_array_equal(cityscapes_label_id_lut()[table[:19]], np.arange(19))


def test_dataset_ids_are_cityscapes_label_ids(project, tmp_path):
    source = project / "cityscapes" / "leftImg8bit" / "train"
    for ids in ("train", "dataset"):
        code, _, stderr = dars_predict(project, source, "--out", tmp_path / ids, "--round", "r2", "--ids", ids,
                                       "--no-overlay")
        assert code == 0, stderr
    for written in sorted((tmp_path / "train").rglob("*.png")):
        train_ids = np.asarray(Image.open(written))
        label_ids = np.asarray(Image.open(tmp_path / "dataset" / written.relative_to(tmp_path / "train")))
        np.testing.assert_array_equal(label_ids, np.asarray(LABEL_ID_OF_TRAIN_ID, np.uint8)[train_ids])


def test_other_class_sets_keep_train_ids_and_get_colours():
    assert class_set_named(list(CITYSCAPES.names)) is CITYSCAPES
    assert class_set_named(list(VOC.names)) is VOC
    np.testing.assert_array_equal(dataset_id_table(VOC), np.arange(256))
    unknown = class_set_named(["road", "car", "person"])
    assert unknown.names == ("road", "car", "person") and unknown.colors == VOC.colors[:3]


def test_a_list_file_of_images(project, model, tmp_path):
    source = project / "cityscapes" / "leftImg8bit"
    first, _, third = images_of(source)
    listed = tmp_path / "list"
    listed.mkdir()
    (listed / "images.txt").write_text(f"{first}\n\n{third} some_label.png\n")  # absolute; a label is ignored
    code, stdout, stderr = dars_predict(project, listed / "images.txt", "--out", tmp_path / "out", "--round", "r2")
    assert code == 0, stderr
    assert "2 images segmented" in stdout
    # mirrored relative to the deepest folder holding both: leftImg8bit/
    written = sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.png"))
    assert written == sorted(f"{p.relative_to(source).with_suffix('')}{suffix}.png"
                             for p in (first, third) for suffix in ("", "_overlay"))


def test_outputs_are_never_read_back_or_written_onto_images(project, tmp_path):
    folder = tmp_path / "images"
    shutil.copytree(project / "cityscapes" / "leftImg8bit" / "val", folder)
    for _ in range(2):  # the second run does not take the first one's outputs (in a subfolder) for images
        code, stdout, stderr = dars_predict(project, folder, "--out", folder / "labels", "--round", "r2")
        assert code == 0 and "1 images segmented" in stdout, stderr
    code, _, stderr = dars_predict(project, folder / "frankfurt", "--out", folder / "frankfurt", "--round", "r2")
    assert code == 2 and "would overwrite this input image" in stderr, stderr


@pytest.fixture
def with_a_corrupt_image(project, tmp_path) -> Path:
    folder = tmp_path / "images"
    shutil.copytree(project / "cityscapes" / "leftImg8bit" / "train", folder)
    (folder / "aachen" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a PNG")
    return folder


def test_an_unreadable_image_is_one_error_line(project, with_a_corrupt_image, tmp_path):
    code, _, stderr = dars_predict(project, with_a_corrupt_image, "--out", tmp_path / "out", "--round", "r2")
    assert code == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {with_a_corrupt_image / 'aachen' / 'broken.png'}: "), stderr


def test_skip_unreadable_warns_and_writes_the_others(project, with_a_corrupt_image, tmp_path):
    code, stdout, stderr = dars_predict(project, with_a_corrupt_image, "--out", tmp_path / "out", "--round", "r2",
                                        "--skip-unreadable")
    assert code == 0, stderr
    assert all(line.startswith("warning: ") for line in stderr.strip().splitlines()), stderr
    assert f"warning: {with_a_corrupt_image / 'aachen' / 'broken.png'}: cannot read image" in stderr
    assert "2 images segmented" in stdout and "skipped 1 unreadable" in stdout
    assert len(list((tmp_path / "out" / "aachen").glob("*_leftImg8bit.png"))) == 2
    assert not (tmp_path / "out" / "aachen" / "broken.png").exists()


ERROR_CASES = {  # name: (model options, a fragment of the error line)
    "empty folder": (["--round", "r2"], "no images found"),
    "neither model": ([], "give either --round"),
    "both models": (["--round", "r2", "--model", "m.pt"], "give either --round"),
    "missing checkpoint": (["--round", "r7"], "r7/model.pt: model checkpoint not found"),
    "two images, one output": (["--round", "r2"], "would both write"),
}


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_errors_name_the_problem(project, tmp_path, case):
    folder = tmp_path / "images"
    (folder / "nested").mkdir(parents=True)
    (folder / "notes.txt").write_text("not an image")
    if case != "empty folder":
        image = Image.fromarray(load_image(images_of(project / "cityscapes")[0]))
        image.save(folder / "nested" / "a.png")
        if case == "two images, one output":
            image.save(folder / "nested" / "a.jpg")
    model_args, expected = ERROR_CASES[case]
    code, _, stderr = dars_predict(project, folder, "--out", tmp_path / "out", *model_args)
    lines = stderr.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], stderr
    if case == "empty folder":
        assert lines[0].startswith(f"error: {folder}: ")
    if case == "two images, one output":
        assert str(tmp_path / "out" / "nested" / "a.png") in lines[0]


def test_help():
    result = CliRunner().invoke(app, ["predict", "--help"])
    assert result.exit_code == 0
    assert "--skip-unreadable" in result.stdout and "labelIds" in result.stdout
