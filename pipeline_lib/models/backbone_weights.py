"""Load a locally saved torchvision classification checkpoint into a segmentation backbone.

Nothing is ever downloaded: the user points at a file (e.g. ``resnet50-0676ba61.pth`` or
``mobilenet_v3_large-8738ca79.pth`` as torchvision saves them) and every mismatch is a
``UserError`` that names the file and example keys.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from pipeline_lib.errors import UserError

_EXAMPLES = 3  # how many offending keys to quote in an error message


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise UserError(f"pretrained backbone file not found: {path}")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a file that is not a checkpoint
        raise UserError(f"cannot read pretrained backbone {path} as a torch state dict: {error}") from error
    # Accept the common wrappers around a bare state dict.
    for wrapper_key in ("state_dict", "model"):
        if isinstance(loaded, dict) and isinstance(loaded.get(wrapper_key), dict):
            loaded = loaded[wrapper_key]
    if not isinstance(loaded, dict) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise UserError(f"pretrained backbone {path} does not hold a state dict of tensors")
    # Checkpoints saved from DataParallel prefix every key with "module.".
    return {key.removeprefix("module."): value for key, value in loaded.items()}


def _examples(keys: list[str]) -> str:
    shown = ", ".join(keys[:_EXAMPLES])
    return f"{len(keys)} (e.g. {shown})"


def load_backbone_weights(
    backbone: nn.Module,
    path: str | os.PathLike,
    source_prefix: str = "",
    ignored_prefixes: tuple[str, ...] = (),
) -> None:
    """Copy the checkpoint at ``path`` into ``backbone``, strictly.

    ``source_prefix`` is stripped from checkpoint keys (``"features."`` for MobileNetV3, whose
    segmentation backbone is the bare ``features`` sequence); keys starting with an
    ``ignored_prefixes`` entry (the ImageNet classifier: ``"fc."``, ``"classifier."``) are dropped.
    Any other key the backbone lacks, any backbone key the file lacks, or a shape mismatch is a
    ``UserError``. BatchNorm ``num_batches_tracked`` may be absent, as in torchvision's own
    ResNet checkpoints, which predate that buffer.
    """
    path = Path(path)
    checkpoint = _read_state_dict(path)
    expected = backbone.state_dict()
    renamed: dict[str, torch.Tensor] = {}
    unexpected: list[str] = []
    for key, value in checkpoint.items():
        if key.startswith(ignored_prefixes):
            continue
        if key.startswith(source_prefix) and key.removeprefix(source_prefix) in expected:
            renamed[key.removeprefix(source_prefix)] = value
        else:
            unexpected.append(key)
    missing = [
        key for key in expected if key not in renamed and not key.endswith("num_batches_tracked")
    ]
    mismatched = [
        f"{key} {tuple(value.shape)} vs {tuple(expected[key].shape)}"
        for key, value in renamed.items()
        if value.shape != expected[key].shape
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {_examples(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_examples(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatches (file vs model): {_examples(mismatched)}")
    if problems:
        raise UserError(
            f"pretrained backbone {path} does not match the {type(backbone).__name__} backbone; "
            + "; ".join(problems)
        )
    # strict=False only because num_batches_tracked may be absent; everything else was checked.
    backbone.load_state_dict(renamed, strict=False)
