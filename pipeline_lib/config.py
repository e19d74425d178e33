"""Typed, checked views of ``params.yaml`` for each stage, and where each round's artifacts live."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline_lib.errors import UserError
from pipeline_lib.params import Params, fraction, fraction_below_one, non_negative, one_of, positive
from pipeline_lib.train.loop import TrainConfig

BASELINE_ROUND = "r0"  # the supervised model trained on the labelled split only


@dataclass(frozen=True)
class RoundPaths:
    """Every artifact of one round under ``outputs/<round>/``."""

    root: Path

    @classmethod
    def of(cls, outputs: Path, round_name: str) -> "RoundPaths":
        return cls(Path(outputs) / round_name)

    model = property(lambda self: self.root / "model.pt")
    train_log = property(lambda self: self.root / "train_log")
    metrics = property(lambda self: self.root / "metrics.json")
    per_class_iou = property(lambda self: self.root / "per_class_iou.csv")
    logits = property(lambda self: self.root / "logits.zarr")
    labeled_logits = property(lambda self: self.root / "labeled_logits.zarr")
    pseudo_labels = property(lambda self: self.root / "pseudo_labels.zarr")
    pseudo_label_stats = property(lambda self: self.root / "pseudo_label_stats.json")
    class_distribution_plot = property(lambda self: self.root / "class_distribution.csv")


@dataclass(frozen=True)
class RoundSchedule:
    name: str
    teacher: str  # round whose model makes this round's pseudo labels
    init: str  # "teacher" (continue from the teacher's weights, as the paper) or "scratch"
    labeling_ratio: float  # α_k
    aug_strength: float  # β_k for the pseudo-labelled images
    iterations: int | None  # this round's training length; None = train.iterations


def round_schedule(params: Params) -> dict[str, RoundSchedule]:
    """The ``rounds`` mapping, checked: each teacher is the baseline or an earlier round."""
    rounds = params.raw("rounds", {}) or {}
    if not isinstance(rounds, dict):
        raise UserError(f"{params.source}: 'rounds' must be a mapping like {{r1: {{labeling_ratio: 0.2, ...}}}}")
    schedule: dict[str, RoundSchedule] = {}
    for name in rounds:
        if name == BASELINE_ROUND or not str(name).isidentifier():
            raise UserError(f"{params.source}: round name {name!r} is reserved or not a plain name")
        key = f"rounds.{name}"
        teacher = params.get(f"{key}.teacher", str)
        if teacher != BASELINE_ROUND and teacher not in schedule:
            raise UserError(f"{params.source}: '{key}.teacher' is {teacher!r}; it must be {BASELINE_ROUND} or a "
                            f"round listed before {name} ({', '.join(schedule) or 'none'})")
        schedule[name] = RoundSchedule(
            name=name, teacher=teacher,
            init=params.get(f"{key}.init", str, one_of("teacher", "scratch")),
            labeling_ratio=params.get(f"{key}.labeling_ratio", float, fraction),
            aug_strength=params.get(f"{key}.aug_strength", float, non_negative),
            iterations=params.get(f"{key}.iterations", int, positive, default=None),
        )
    return schedule


def known_rounds(params: Params) -> list[str]:
    return [BASELINE_ROUND, *round_schedule(params)]


def check_round(params: Params, round_name: str) -> None:
    rounds = known_rounds(params)
    if round_name not in rounds:
        raise UserError(f"unknown round {round_name!r}; {params.source} defines {', '.join(rounds)}")


def train_config(params: Params, round_name: str) -> TrainConfig:
    check_round(params, round_name)
    get = params.get
    is_baseline = round_name == BASELINE_ROUND
    labeled_strength = get("train.aug_strength", float, non_negative)
    iterations = get("train.iterations", int, positive)
    if not is_baseline:
        iterations = round_schedule(params)[round_name].iterations or iterations
    return TrainConfig(
        iterations=iterations,
        batch_size=get("train.batch_size", int, lambda v: None if v >= 2 else "must be >= 2"),
        crop_size=get("train.crop_size", int, positive),
        base_lr=get("train.base_lr", float, positive),
        head_lr_multiplier=get("train.head_lr_multiplier", float, positive),
        momentum=get("train.momentum", float, non_negative),
        weight_decay=get("train.weight_decay", float, non_negative),
        poly_power=get("train.poly_power", float, non_negative),
        aux_weight=get("train.aux_weight", float, non_negative),
        labeled_aug_strength=labeled_strength,
        pseudo_aug_strength=labeled_strength if is_baseline else round_schedule(params)[round_name].aug_strength,
        pseudo_fraction=0.0 if is_baseline else get("self_training.pseudo_fraction", float, fraction_below_one),
        checkpoint_every=get("train.checkpoint_every", int, positive),
        log_every=get("train.log_every", int, positive),
        num_workers=get("train.num_workers", int, non_negative),
        autocast=get("train.autocast", bool),
        seed=get("seed", int),
    )
