"""The `dars` command starts instantly: help texts, `dars models` and parameter errors import none of torch,
torchvision, zarr or dvc (3.6–5.7 s here when they did)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from pipeline_project import REPO

HEAVY = ("torch", "torchvision", "zarr", "dvc", "dvclive")
SUBCOMMANDS = ("prepare", "train", "evaluate", "infer", "pseudo-label", "inspect", "predict", "ablation",
               "ablation table")


def heavy_modules_loaded(args: list[str], cwd) -> tuple[list[str], str]:
    """Run ``dars <args>`` in a fresh interpreter; the heavy modules it imported, and its stderr."""
    script = ("import json, sys\nfrom stages.cli import app\n"
              f"try:\n    app({args!r})\nexcept SystemExit:\n    pass\n"
              f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))")
    result = subprocess.run([sys.executable, "-c", script], cwd=cwd, capture_output=True, text=True,
                            env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    return json.loads(result.stdout.strip().splitlines()[-1]), result.stderr


@pytest.mark.parametrize("args", [["--help"], ["models"], *([*c.split(), "--help"] for c in SUBCOMMANDS)],
                         ids=lambda a: " ".join(a))
def test_help_and_models_import_nothing_heavy(args, tmp_path):
    loaded, _ = heavy_modules_loaded(args, tmp_path)
    assert loaded == []


@pytest.mark.parametrize("args", [
    ["prepare"], ["train", "--round", "r0"], ["train", "--round", "r1"], ["evaluate", "--round", "r0"],
    ["infer", "--round", "r1"], ["pseudo-label", "--round", "r1"],
    ["predict", "images", "--out", "labels", "--round", "r1"],
])
def test_parameter_errors_import_nothing_heavy(args, tmp_path):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"]["root"] = str(REPO / params["data"]["root"])
    params["train"]["base_lr"] = -1  # read by train
    params["inference"]["mode"] = "tiles"  # read by evaluate, infer and predict
    params["pseudo_label"]["method"] = "magic"  # read by pseudo-label
    params["data"]["labeled_fraction"] = 2  # read by prepare
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    loaded, stderr = heavy_modules_loaded(args, tmp_path)
    assert stderr.startswith("error: params.yaml: '"), stderr
    assert loaded == []


def test_models_lists_each_architecture_with_what_it_is():
    out = subprocess.run([sys.executable, "-m", "stages.cli", "models"], cwd=REPO, capture_output=True, text=True,
                         check=True).stdout
    lines = {line.split()[0]: line for line in out.splitlines()}
    assert "deep-stem ResNet-50" in lines["pspnet_resnet50_deep_stem"]
    assert "as the DARS code" in lines["deeplabv2_resnet101_dars"]
    assert "textbook" in lines["deeplabv2_resnet101"]
