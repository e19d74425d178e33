"""CamVid in the SegNet layout: the preparer on a tiny tree in that exact layout (list files or bare folders,
with and without a test split), each malformed input refused with one line naming the file, and the real data in
../shared when it is there."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from fixtures import make_camvid_fixture
from pipeline_lib.data.camvid import prepare_camvid
from pipeline_lib.data.classes import CAMVID, IGNORE_INDEX
from pipeline_lib.data.prepared import load_label, load_spec, read_split
from pipeline_lib.data.splits import split_labeled_unlabeled
from pipeline_lib.errors import UserError

SHARED_CAMVID = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "camvid"


@pytest.fixture(scope="module")
def camvid(tmp_path_factory) -> Path:
    return make_camvid_fixture(tmp_path_factory.mktemp("camvid") / "CamVid")


def copy_of(root: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(root, tmp_path / "CamVid"))


def ids(prepared: Path, split: str) -> list[str]:
    return [s.id for s in read_split(prepared, split)]


def test_classes_are_segnets_eleven_with_void_ignored():
    assert CAMVID.num_classes == 11 and CAMVID.ignore_index == 11
    assert CAMVID.names[3] == "road" and CAMVID.names[10] == "bicyclist"
    assert CAMVID.colors[3] == (128, 64, 128) and CAMVID.colors[4] == (60, 40, 222)


def test_prepares_the_splits_with_void_read_as_ignore(camvid, tmp_path):
    prepare_camvid(tmp_path / "p", camvid, 0.125, None, seed=0)
    spec = load_spec(tmp_path / "p")
    assert spec.name == "camvid" and spec.classes == CAMVID
    labeled, unlabeled = ids(tmp_path / "p", "labeled"), ids(tmp_path / "p", "unlabeled")
    assert (len(labeled), len(unlabeled)) == (2, 14)  # 1/8 of 16
    train = sorted(p.stem for p in (camvid / "train").glob("*.png"))
    assert sorted(labeled + unlabeled) == train
    assert ids(tmp_path / "p", "val") == sorted(p.stem for p in (camvid / "val").glob("*.png"))
    assert ids(tmp_path / "p", "test") == sorted(p.stem for p in (camvid / "test").glob("*.png"))
    hashes = json.loads((tmp_path / "p" / "split_hashes.json").read_text())
    assert {k: v["images"] for k, v in hashes.items()} == {"labeled": 2, "unlabeled": 14, "val": 3, "test": 2}
    # Unlabelled images keep their annotation: ground truth for measuring pseudo-label accuracy only.
    samples = read_split(tmp_path / "p", "unlabeled", spec)
    assert all(s.label is not None for s in samples)
    raws = [np.asarray(Image.open(s.label)) for s in samples]
    assert any((raw == 11).any() for raw in raws)
    for sample, raw in zip(samples, raws):
        np.testing.assert_array_equal(load_label(sample.label, spec), np.where(raw == 11, IGNORE_INDEX, raw))


def test_the_split_is_the_shared_seeded_draw(camvid, tmp_path):
    prepare_camvid(tmp_path / "p", camvid, None, 5, seed=3)
    expected, _ = split_labeled_unlabeled(read_split(tmp_path / "p", "labeled") +
                                          read_split(tmp_path / "p", "unlabeled"), labeled_count=5, seed=3)
    assert ids(tmp_path / "p", "labeled") == [s.id for s in expected]
    prepare_camvid(tmp_path / "q", camvid, None, 5, seed=4)
    assert ids(tmp_path / "q", "labeled") != ids(tmp_path / "p", "labeled")


def test_folders_without_list_files_give_the_same_prepared_lists(camvid, tmp_path):
    bare = copy_of(camvid, tmp_path)
    for listed in bare.glob("*.txt"):
        listed.unlink()
    prepare_camvid(tmp_path / "listed", camvid, 0.25, None, seed=1)
    prepare_camvid(tmp_path / "bare", bare, 0.25, None, seed=1)
    for split in ("labeled", "unlabeled", "val", "test"):
        assert ((tmp_path / "listed" / "splits" / f"{split}.txt").read_text()
                == (tmp_path / "bare" / "splits" / f"{split}.txt").read_text())


def test_a_list_file_is_the_split(camvid, tmp_path):
    root = copy_of(camvid, tmp_path)
    lines = (root / "train.txt").read_text().splitlines()
    (root / "train.txt").write_text("\n".join(lines[:8]) + "\n")  # the other 8 images are not in train
    prepare_camvid(tmp_path / "p", root, 0.25, None, seed=0)
    listed = sorted(Path(line.split()[0]).stem for line in lines[:8])
    assert sorted(ids(tmp_path / "p", "labeled") + ids(tmp_path / "p", "unlabeled")) == listed


def test_without_a_test_folder_there_is_no_test_split(camvid, tmp_path):
    root = copy_of(camvid, tmp_path)
    for path in ("test", "testannot"):
        shutil.rmtree(root / path)
    (root / "test.txt").unlink()
    prepare_camvid(tmp_path / "p", root, 0.25, None, seed=0)
    assert not (tmp_path / "p" / "splits" / "test.txt").exists()
    with pytest.raises(UserError, match=r"test\.txt: the camvid dataset was prepared without a test split"):
        read_split(tmp_path / "p", "test")


def test_labeled_list_selects_by_file_name(camvid, tmp_path):
    chosen = sorted(p.name for p in (camvid / "train").glob("*.png"))[3:6]
    listed = tmp_path / "labeled.txt"
    listed.write_text("".join(f"/elsewhere/train/{name} /elsewhere/trainannot/{name}\n" for name in chosen))
    prepare_camvid(tmp_path / "p", camvid, 0.125, None, seed=0, labeled_list=listed)
    assert ids(tmp_path / "p", "labeled") == [Path(name).stem for name in chosen]
    assert len(ids(tmp_path / "p", "unlabeled")) == 13


def break_value(root: Path) -> str:
    path = root / "valannot" / sorted(p.name for p in (root / "valannot").iterdir())[1]
    label = np.asarray(Image.open(path)).copy()
    label[0, 0] = 12
    Image.fromarray(label).save(path)
    return rf"{path}: label values \[12\] exceed the 11 classes \(valid: 0\.\.10, ignore 11\)"


def break_size(root: Path) -> str:
    path = root / "trainannot" / sorted(p.name for p in (root / "trainannot").iterdir())[4]
    Image.fromarray(np.zeros((24, 30), np.uint8)).save(path)
    return rf"{path}: label size 30x24 differs from its image size 32x24"


def break_missing_annotation(root: Path) -> str:
    name = sorted(p.name for p in (root / "testannot").iterdir())[0]
    (root / "testannot" / name).unlink()
    return rf"test\.txt:1: annotation {root / 'testannot' / name} not found for test image {name}"


def break_missing_annotation_folder(root: Path) -> str:
    shutil.rmtree(root / "valannot")
    return rf"{root / 'valannot'}: not found; CamVid in the SegNet layout has train/, trainannot/"


def break_missing_image(root: Path) -> str:
    name = sorted(p.name for p in (root / "train").iterdir())[2]
    (root / "train" / name).unlink()
    return rf"train\.txt:\d+: image {root / 'train' / name} not found"


def break_stray_annotation_without_lists(root: Path) -> str:
    for listed in root.glob("*.txt"):
        listed.unlink()
    name = sorted(p.name for p in (root / "val").iterdir())[0]
    (root / "val" / name).unlink()
    return rf"{root / 'valannot' / name}: annotation has no image of the same name in {root / 'val'}"


def break_empty_image(root: Path) -> str:
    name = sorted(p.name for p in (root / "train").iterdir())[0]
    (root / "train" / name).write_bytes(b"")
    return rf"{root / 'train' / name}: cannot read image"


@pytest.mark.parametrize("damage", [break_value, break_size, break_missing_annotation, break_missing_annotation_folder,
                                    break_missing_image, break_stray_annotation_without_lists, break_empty_image])
def test_malformed_input_is_refused_naming_the_file(camvid, tmp_path, damage):
    root = copy_of(camvid, tmp_path)
    expected = damage(root)
    with pytest.raises(UserError, match=expected) as caught:
        prepare_camvid(tmp_path / "p", root, 0.125, None, seed=0)
    assert "\n" not in str(caught.value)


def test_a_missing_root_is_refused(tmp_path):
    with pytest.raises(UserError, match=rf"{tmp_path / 'nowhere'}: CamVid root directory not found"):
        prepare_camvid(tmp_path / "p", tmp_path / "nowhere", 0.125, None, seed=0)


@pytest.mark.skipif(not SHARED_CAMVID.is_dir(), reason="the real CamVid is in ../shared/datasets/camvid only here")
def test_the_real_camvid_prepares_46_321_101_at_one_eighth(tmp_path):
    prepare_camvid(tmp_path / "p", SHARED_CAMVID, 0.125, None, seed=0)
    hashes = json.loads((tmp_path / "p" / "split_hashes.json").read_text())
    assert [hashes[split]["images"] for split in ("labeled", "unlabeled", "val")] == [46, 321, 101]
    shares = dict(zip(CAMVID.names, json.loads((tmp_path / "p" / "class_distribution.json").read_text())["shares"]))
    assert max(shares, key=shares.get) == "road" and min(shares, key=shares.get) == "bicyclist"


@pytest.mark.slow
def test_the_pipeline_runs_on_camvid_and_scores_test_only_on_request(tmp_path_factory):
    """The real `dvc repro` of round 0 on the tiny SegNet tree, the tail fixed by class names; then
    `dars evaluate --split test` writes its own file, which no stage reads or tracks."""
    from pipeline_project import dvc, make_project, run

    root = make_camvid_fixture(tmp_path_factory.mktemp("data") / "CamVid")
    project = make_project(tmp_path_factory.mktemp("camvid_pipeline"), {
        "data": {"dataset": "camvid", "root": str(root), "labeled_count": 4},
        "train": {"iterations": 3, "crop_size": 16},
        "evaluate": {"tail_classes": ["pole", "sign-symbol", "fence", "pedestrian", "bicyclist"]}})
    dvc(project, "repro", "evaluate_r0")
    val = json.loads((project / "outputs" / "r0" / "evaluation.json").read_text())
    assert val["images"] == 3 and set(val["iou"]) == set(CAMVID.names) and "split" not in val
    assert val["tail_classes"] == ["pole", "sign-symbol", "fence", "pedestrian", "bicyclist"]
    printed = run([sys.executable, "-m", "stages.cli", "evaluate", "--round", "r0", "--split", "test"], project)
    assert "2 test images" in printed.stdout and "test_evaluation.json" in printed.stdout
    test = json.loads((project / "outputs" / "r0" / "test_evaluation.json").read_text())
    assert test["split"] == "test" and test["images"] == 2 and test["tail_classes"] == val["tail_classes"]
    assert json.loads((project / "outputs" / "r0" / "evaluation.json").read_text()) == val
    assert "up to date" in dvc(project, "status", "evaluate_r0").stdout
    other = yaml.safe_load((project / "params.yaml").read_text())
    other["model"]["arch"] = "pspnet_resnet18"
    (project / "other.yaml").write_text(yaml.safe_dump(other))
    noted = run([sys.executable, "-m", "stages.cli", "evaluate", "--params", "other.yaml"], project)
    assert "note: outputs/r0/model.pt is a lraspp_mobilenet_v3_large; model.arch says pspnet_resnet18" in noted.stderr
