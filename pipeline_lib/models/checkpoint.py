"""Model checkpoints: the weights plus what is needed to rebuild the model and trace where it came from.

Every checkpoint is plain data (tensors, str, numbers, lists, dicts) and is read back with
``torch.load(weights_only=True)``, so a file from elsewhere cannot run code when it is loaded."""

from __future__ import annotations

from pathlib import Path

import torch

from pipeline_lib.atomic import atomic_path
from pipeline_lib.errors import UserError
from pipeline_lib.models.build import build_model


def first_line(exc: BaseException) -> str:
    """An exception's message in one line (torch's unpickling errors span a dozen)."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def save_checkpoint(path: Path, model: torch.nn.Module, arch: str, class_names: list[str],
                    provenance: dict, optimizer_state: dict | None = None) -> None:
    """Write weights (CPU tensors, contiguous) with arch, classes and provenance, atomically.

    ``optimizer_state``: the SGD momentum buffers at the end of training (``{position: {"momentum_buffer":
    tensor}}``), kept so that a next round may carry them on (``optimizer_state: teacher``)."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    checkpoint = {"arch": arch, "class_names": list(class_names), "model": state,
                  "output_stride": int(getattr(model, "output_stride", 1)), "provenance": provenance}
    if optimizer_state is not None:
        checkpoint["optimizer_state"] = {int(index): {"momentum_buffer": entry["momentum_buffer"].detach().cpu()
                                                      .contiguous()}
                                         for index, entry in optimizer_state.items()
                                         if entry.get("momentum_buffer") is not None}
    with atomic_path(path) as tmp:
        torch.save(checkpoint, tmp)


def load_checkpoint(path: Path, expect_classes: list[str] | None = None) -> tuple[torch.nn.Module, dict]:
    """Rebuild the model saved at ``path`` (random init, then its weights). Returns (model, checkpoint dict)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: model checkpoint not found; run the stage that trains it first")
    try:
        # weights_only: tensors and plain containers only. A pickle can run any code while it is read;
        # weights_only refuses every other type before anything is constructed.
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        arch, class_names = checkpoint["arch"], checkpoint["class_names"]
    except Exception as exc:  # a truncated, foreign or code-carrying file
        raise UserError(f"{path}: not a DARS model checkpoint ({first_line(exc)})") from None
    if expect_classes is not None and list(class_names) != list(expect_classes):
        raise UserError(f"{path}: checkpoint has classes {class_names[:4]}… ({len(class_names)}) but the dataset "
                        f"has {list(expect_classes)[:4]}… ({len(expect_classes)})")
    model = build_model(arch, len(class_names), pretrained_backbone=None)
    model.load_state_dict(checkpoint["model"])
    return model, checkpoint
