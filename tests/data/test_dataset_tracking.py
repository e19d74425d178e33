"""The user's own data is a tracked input of `prepare`: editing a mask, adding an image or removing one under
``data.root`` makes `dvc status` report `prepare` as changed; an unchanged root reruns nothing."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from fixtures import make_folder_fixture
from pipeline_project import dvc, make_project

pytestmark = pytest.mark.slow


def prepare_changed(project) -> bool:
    return "prepare" in json.loads(dvc(project, "status", "prepare", "--json").stdout or "{}")


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    base = tmp_path_factory.mktemp("tracking")
    root = make_folder_fixture(base / "my_dataset")  # outside the project, as a user's dataset usually is
    project = make_project(base / "project", {"data": {"dataset": "folder", "root": str(root)}})
    dvc(project, "repro", "prepare")
    assert not prepare_changed(project)
    return project, root


def test_an_edited_mask_changes_prepare(project):
    project, root = project
    mask = sorted((root / "masks" / "labeled").iterdir())[0]
    original = mask.read_bytes()
    label = np.asarray(Image.open(mask)).copy()
    label[0, 0] = 1 if label[0, 0] != 1 else 2
    Image.fromarray(label).save(mask)
    try:
        assert prepare_changed(project)
    finally:
        mask.write_bytes(original)
    assert not prepare_changed(project)


def test_an_added_image_changes_prepare(project):
    project, root = project
    added = root / "images" / "unlabeled" / "added_999.png"
    Image.fromarray(np.zeros((24, 32, 3), np.uint8)).save(added)
    try:
        assert prepare_changed(project)
    finally:
        added.unlink()
    assert not prepare_changed(project)


def test_a_removed_image_changes_prepare(project):
    project, root = project
    removed = sorted((root / "images" / "unlabeled").iterdir())[0]
    kept = removed.read_bytes()
    removed.unlink()
    try:
        assert prepare_changed(project)
    finally:
        removed.write_bytes(kept)
    assert not prepare_changed(project)
