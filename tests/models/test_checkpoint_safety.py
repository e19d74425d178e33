"""Checkpoints and resume states are read without running code: a crafted pickle is refused, its payload
never runs, and the command says so in one line."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pipeline_lib.errors import UserError
from pipeline_lib.models.build import build_model
from pipeline_lib.models.checkpoint import load_checkpoint, save_checkpoint


class _Payload:
    """Unpickling this calls os.system(command): what a hostile model.pt would do."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def _crafted(path: Path, marker: Path, torch_format: bool) -> Path:
    payload = {"arch": "lraspp_mobilenet_v3_large", "class_names": ["a", "b"], "model": _Payload(f"touch {marker}")}
    if torch_format:
        torch.save(payload, path)  # a zip archive that torch.load with weights_only=False would execute
    else:
        path.write_bytes(pickle.dumps(payload))
    return path


@pytest.mark.parametrize("torch_format", [True, False], ids=["torch-zip", "plain-pickle"])
def test_a_crafted_checkpoint_is_refused_and_its_payload_never_runs(tmp_path, torch_format):
    marker = tmp_path / "payload-ran"
    path = _crafted(tmp_path / "model.pt", marker, torch_format)
    with pytest.raises(UserError, match=r"model.pt: not a DARS model checkpoint \(") as raised:
        load_checkpoint(path)
    assert "\n" not in str(raised.value)
    assert not marker.exists()


def test_a_real_checkpoint_loads_with_weights_only(tmp_path):
    torch.manual_seed(0)
    model = build_model("lraspp_mobilenet_v3_large", 3)
    save_checkpoint(tmp_path / "model.pt", model, "lraspp_mobilenet_v3_large", ["a", "b", "c"],
                    {"round": "r0", "train": {"base_lr": 0.1, "seed": 0}, "pretrained_backbone": None})
    loaded, checkpoint = load_checkpoint(tmp_path / "model.pt", expect_classes=["a", "b", "c"])
    assert checkpoint["provenance"]["train"]["base_lr"] == 0.1
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))


@pytest.mark.parametrize("stage", ["evaluate", "infer"])
def test_stages_refuse_a_crafted_teacher_in_one_line(tmp_path, stage):
    from pipeline_project import make_project

    project = make_project(tmp_path / "project")
    subprocess.run([sys.executable, "-m", "stages.cli", "prepare"], cwd=project, check=True, capture_output=True)
    marker = tmp_path / "payload-ran"
    (project / "outputs" / "r0").mkdir(parents=True)
    _crafted(project / "outputs" / "r0" / "model.pt", marker, torch_format=True)
    args = ["evaluate", "--round", "r0"] if stage == "evaluate" else ["infer", "--round", "r1"]
    result = subprocess.run([sys.executable, "-m", "stages.cli", *args], cwd=project, capture_output=True, text=True)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: outputs/r0/model.pt: not a DARS model checkpoint")
    assert not marker.exists()


def test_training_refuses_a_crafted_resume_state(tmp_path):
    from pipeline_project import make_project

    project = make_project(tmp_path / "project")
    subprocess.run([sys.executable, "-m", "stages.cli", "prepare"], cwd=project, check=True, capture_output=True)
    marker = tmp_path / "payload-ran"
    state = project / ".dars_resume" / "r0" / "state.pt"
    state.parent.mkdir(parents=True)
    torch.save({"fingerprint": "x", "model": _Payload(f"touch {marker}")}, state)
    result = subprocess.run([sys.executable, "-m", "stages.cli", "train", "--round", "r0"], cwd=project,
                            capture_output=True, text=True)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: {state.relative_to(project)}: not a resume state")
    assert not marker.exists()
