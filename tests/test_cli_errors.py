"""Bad input gets one clear `error:` line naming the file, key or value, and exit status 2 — never a traceback.

Each case runs the real `dars` command in a subprocess, in its own throw-away project folder. The
subprocesses are independent, so they run two at a time (the command's imports dominate their cost).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from fixtures import make_cityscapes_fixture
from pipeline_project import REPO, TINY_PARAMS, deep_update

DARS = Path(sys.executable).parent / "dars"


@dataclass(frozen=True)
class Case:
    args: tuple[str, ...]  # the dars sub-command and its options
    expected: tuple[str, ...]  # fragments the one error line must contain
    setup: Callable[[Path], None]  # writes params.yaml (and data) into the case's folder


def write_params(folder: Path, changes: dict | None = None, text: str | None = None) -> None:
    """params.yaml: the repository's, with the tiny test sizes and ``changes`` applied (or ``text`` as is)."""
    if text is None:
        params = deep_update(deep_update(yaml.safe_load((REPO / "params.yaml").read_text()), TINY_PARAMS),
                             changes or {})
        text = yaml.safe_dump(params, sort_keys=False)
    (folder / "params.yaml").write_text(text)


def cityscapes_params(folder: Path, **changes) -> dict:
    return deep_update({"data": {"dataset": "cityscapes", "root": str(folder / "cityscapes"),
                                 "labeled_fraction": 0.25},
                        "train": {"iterations": 2, "crop_size": 32, "num_workers": 1}}, changes)


def rewrite_train_labels(root: Path, change: Callable[[np.ndarray], np.ndarray]) -> None:
    for path in sorted((root / "gtFine" / "train").glob("*/*_gtFine_labelTrainIds.png")):
        Image.fromarray(change(np.asarray(Image.open(path)))).save(path)


def prepared_cityscapes(folder: Path, **changes) -> None:
    """A tiny Cityscapes tree and its prepared dataset under data/prepared, as `dars prepare` writes it."""
    from stages.prepare import prepare

    make_cityscapes_fixture(folder / "cityscapes")
    write_params(folder, cityscapes_params(folder, **changes))
    prepare(params=folder / "params.yaml", out=folder / "data" / "prepared")


def missing_data_root(folder: Path) -> None:
    write_params(folder, {"data": {"dataset": "cityscapes", "root": str(folder / "no_such_dir")}})


def label_values_beyond_classes(folder: Path) -> None:
    make_cityscapes_fixture(folder / "cityscapes")

    def with_a_50(label: np.ndarray) -> np.ndarray:
        label = label.copy()
        label[0, 0] = 50  # train ids are 0..18 and 255
        return label

    rewrite_train_labels(folder / "cityscapes", with_a_50)
    write_params(folder, cityscapes_params(folder))


def label_size_mismatch(folder: Path) -> None:
    # Prepare reads labels without their images; the mismatch surfaces when training loads a pair,
    # inside a DataLoader worker process (train.num_workers = 1).
    prepared_cityscapes(folder)
    rewrite_train_labels(folder / "cityscapes", lambda label: np.ascontiguousarray(label[: label.shape[0] // 2]))


CASES: dict[str, Case] = {
    "prepare: data.root is not a directory": Case(
        ("prepare",), ("params.yaml", "data.root", "no_such_dir"), missing_data_root),
    "prepare: label values beyond the class count": Case(
        ("prepare",), ("_gtFine_labelTrainIds.png", "[50]", "19 classes"), label_values_beyond_classes),
    "prepare: params.yaml is not YAML": Case(
        ("prepare",), ("params.yaml", "not valid YAML"),
        lambda folder: write_params(folder, text="data: {dataset: [cityscapes\nseed: 0\n")),
    "train: image and label sizes differ": Case(
        ("train", "--round", "r0"), ("_gtFine_labelTrainIds.png", "label size 64x16", "image size 64x32"),
        label_size_mismatch),
    "train: negative train.base_lr": Case(
        ("train", "--round", "r0"), ("params.yaml", "train.base_lr", "-0.01"),
        lambda folder: write_params(folder, {"train": {"base_lr": -0.01}})),
    "infer: labeling_ratio 1.5": Case(
        ("infer", "--round", "r1"), ("params.yaml", "rounds.r1.labeling_ratio", "1.5"),
        lambda folder: write_params(folder, {"rounds": {"r1": {"labeling_ratio": 1.5}}})),
    "infer: missing teacher checkpoint": Case(
        ("infer", "--round", "r2"), ("outputs/r1/model.pt", "not found"), prepared_cityscapes),
    "pseudo-label: unknown pseudo_label.method": Case(
        ("pseudo-label", "--round", "r1"), ("params.yaml", "pseudo_label.method", "'magic'"),
        lambda folder: write_params(folder, {"pseudo_label": {"method": "magic"}})),
    "confidence: missing logits": Case(
        ("confidence", "--round", "r1"), ("outputs/r1/logits.zarr", "not found"), prepared_cityscapes),
    "pseudo-label: missing confidences": Case(
        ("pseudo-label", "--round", "r1"), ("outputs/r1/confidences.zarr", "not found"), prepared_cityscapes),
    "evaluate: unknown round": Case(
        ("evaluate", "--round", "r9"), ("'r9'", "params.yaml", "r0, r1, r2"), lambda folder: write_params(folder)),
    "evaluate: missing checkpoint": Case(
        ("evaluate", "--round", "r0"), ("outputs/r0/model.pt", "not found"), prepared_cityscapes),
    "inspect: the baseline round has no pseudo labels": Case(
        ("inspect", "--round", "r0"), ("round r0", "no pseudo labels"), lambda folder: write_params(folder)),
}


def run_dars(folder: Path, args: tuple[str, ...]) -> subprocess.CompletedProcess:
    # TQDM_DISABLE: no progress bars, so stderr holds nothing but what the command reports.
    env = {**os.environ, "TQDM_DISABLE": "1", "NO_COLOR": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([str(DARS), *args], cwd=folder, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict[str, subprocess.CompletedProcess]:
    folders = {}
    for number, (name, case) in enumerate(CASES.items()):
        folders[name] = tmp_path_factory.mktemp(f"case{number}")
        case.setup(folders[name])
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {name: pool.submit(run_dars, folders[name], case.args) for name, case in CASES.items()}
        outcome = {name: future.result() for name, future in futures.items()}
    for folder in folders.values():
        shutil.rmtree(folder, ignore_errors=True)
    return outcome


def test_dars_is_installed():
    assert DARS.is_file(), f"{DARS}: the dars command is missing; pip install -e . first"


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_gives_one_error_line(results, name):
    result = results[name]
    report = f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert result.returncode == 2, report
    assert "Traceback" not in result.stderr + result.stdout, report
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), report
    for fragment in CASES[name].expected:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"


def test_the_cases_cover_every_stage():
    commands = {case.args[0] for case in CASES.values()}
    assert commands >= {"prepare", "train", "infer", "pseudo-label", "evaluate", "inspect"}
