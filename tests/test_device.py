"""One device override for every stage: DARS_DEVICE=auto|cpu|cuda, checked, with one-line errors."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from pipeline_lib.device import pick_device, uses_gpu
from pipeline_lib.errors import UserError
from pipeline_project import REPO


def test_auto_follows_torch_and_cpu_always_means_the_cpu():
    assert uses_gpu({}) == torch.cuda.is_available() == uses_gpu({"DARS_DEVICE": "auto"})
    assert uses_gpu({"DARS_DEVICE": " CPU "}) is False
    assert pick_device(0, {"DARS_DEVICE": "cpu"}) == torch.device("cpu")


def test_an_unknown_device_is_refused_naming_the_choices():
    with pytest.raises(UserError, match="DARS_DEVICE must be one of auto, cpu, cuda, got 'tpu'"):
        uses_gpu({"DARS_DEVICE": "tpu"})


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without a GPU")
def test_cuda_without_a_gpu_is_one_error_line_from_a_stage(tmp_path):
    result = subprocess.run([sys.executable, "-m", "stages.cli", "confidence", "--round", "r1",
                             "--params", str(REPO / "params.yaml"), "--prepared", str(tmp_path)],
                            cwd=tmp_path, capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "DARS_DEVICE": "cuda"})
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert lines[0].startswith("error: DARS_DEVICE=cuda but torch sees no GPU")
