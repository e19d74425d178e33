"""`dars check`: the whole params.yaml checked before DVC builds its graph, one line per problem."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from pipeline_lib.check import check_params
from pipeline_lib.params import Params
from pipeline_project import REPO


def default() -> dict:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"]["root"] = str(REPO / params["data"]["root"])  # the checks run from a scratch directory
    return params


def check(tmp_path, params) -> subprocess.CompletedProcess:
    path = tmp_path / "params.yaml"
    path.write_text(params if isinstance(params, str) else yaml.safe_dump(params, sort_keys=False))
    return subprocess.run([sys.executable, "-m", "stages.cli", "check"], cwd=tmp_path, capture_output=True,
                          text=True, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})


def with_change(change) -> dict:
    params = default()
    change(params)
    return params


CASES = {
    "empty file": ("", "params.yaml: empty; it must define seed, data"),
    "no rounds": (with_change(lambda p: p.pop("rounds")), "params.yaml: missing section rounds"),
    "empty rounds": (with_change(lambda p: p.update(rounds={})),
                     "params.yaml: 'rounds' must define at least one self-training round"),
    "missing teacher": (with_change(lambda p: p["rounds"]["r2"].update(teacher="r9")),
                        "params.yaml: 'rounds.r2.teacher' is 'r9'; it must be r0 or a round listed before r2 (r1)"),
    "cyclic teacher": (with_change(lambda p: p["rounds"]["r1"].update(teacher="r2")),
                       "params.yaml: 'rounds.r1.teacher' is 'r2'; it must be r0 or a round listed before r1"),
    "unknown architecture": (with_change(lambda p: p["model"].update(arch="resnet")),
                             "params.yaml: 'model.arch' must be one of pspnet_resnet18"),
    "bad rule": (with_change(lambda p: p["pseudo_label"].update(method="magic")),
                 "params.yaml: 'pseudo_label.method' must be one of st, cbst, da, dars, got 'magic'"),
    "bad round value": (with_change(lambda p: p["rounds"]["r1"].update(labeling_ratio=0)),
                        "params.yaml: 'rounds.r1.labeling_ratio' must be in (0, 1], got 0"),
    "bad inference": (with_change(lambda p: p["inference"].update(stride=-3)),
                      "params.yaml: 'inference.stride' must be > 0, got -3"),
    "misspelt tail class": (with_change(lambda p: (p["data"].update(dataset="camvid", root=str(REPO)),
                                                   p["evaluate"].update(tail_classes=["pole", "sign"]))),
                            "params.yaml: 'evaluate.tail_classes' names no camvid class (unknown tail class 'sign'; "
                            "valid names: sky, building, pole, road,"),
    "not yaml": ("seed: 0\nrounds: [unclosed\n", "params.yaml:3:1: not valid YAML (expected ',' or ']'"),
    "misspelt key": (with_change(lambda p: p["train"].update(iteratons=p["train"].pop("iterations"))),
                     "params.yaml: missing key 'train.iterations' ('iteratons' is there: misspelt?)"),
    "misspelt optional key": (with_change(lambda p: p["inference"].update(base_sise=p["inference"].pop("base_size"))),
                              "params.yaml: unknown key 'inference.base_sise'; did you mean 'inference.base_size'? "
                              "No stage reads it"),
    "misspelt section": (with_change(lambda p: p.update(infernce=dict(p["inference"]))),
                         "params.yaml: unknown key 'infernce.mode'; did you mean 'inference.mode'?"),
    "stride over the crop": (with_change(lambda p: p["inference"].update(mode="sliding", crop_size=64, stride=65)),
                             "params.yaml: 'inference.stride' must be at most the sliding-window crop (64)"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_check_refuses_in_one_line(tmp_path, name):
    params, expected = CASES[name]
    result = check(tmp_path, params)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {expected}"), result.stderr


def test_check_accepts_the_default_and_names_the_rounds(tmp_path):
    result = check(tmp_path, default())
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "params.yaml: valid; rounds r0, r1, r2"


def test_a_fraction_overridden_by_a_count_is_no_unknown_key(tmp_path):
    """data.labeled_count overrides data.labeled_fraction: the file may hold both, and dars check accepts it."""
    data = yaml.safe_load((REPO / "params.yaml").read_text())
    data["data"]["labeled_count"] = 4
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    check_params(Params.load(tmp_path / "params.yaml"))
