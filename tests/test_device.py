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


# In a process of its own: cuBLAS reads its workspace setting when it starts, and the deterministic mode is global.
_TWO_GPU_TRAININGS = """
import torch
from pipeline_lib.device import autocast_context, pick_device
from pipeline_lib.models.build import build_model
from pipeline_lib.train.loss import segmentation_loss

device = pick_device(0, {"DARS_DEVICE": "cuda"})


def train():
    torch.manual_seed(0)
    model = build_model("lraspp_mobilenet_v3_large", 19).train().to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    generator = torch.Generator().manual_seed(1)
    for _ in range(10):
        images = torch.randn(4, 3, 96, 96, generator=generator).to(device)
        labels = torch.randint(0, 19, (4, 96, 96), generator=generator).to(device)
        with autocast_context(device, "auto"):
            loss = segmentation_loss(model(images), labels, 0.4)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return [p.detach().cpu() for p in model.state_dict().values()]


first, second = train(), train()
print(sum(not torch.equal(a, b) for a, b in zip(first, second)), "of", len(first), "tensors differ")
"""


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_seeded_training_rerun_on_a_gpu_is_bit_identical():
    result = subprocess.run([sys.executable, "-c", _TWO_GPU_TRAININGS], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1].startswith("0 of "), result.stdout
