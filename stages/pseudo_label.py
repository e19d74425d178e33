"""pseudo-label: thresholds from one streaming pass over the logits store, pseudo labels from a second."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import typer

from pipeline_lib.config import RoundPaths, round_schedule
from pipeline_lib.data.prepared import load_class_distribution, load_label, load_spec, read_split
from pipeline_lib.errors import UserError
from pipeline_lib.params import Params, one_of, positive
from pipeline_lib.pseudo_label.rules import METHODS
from pipeline_lib.pseudo_label.run import run_pseudo_labeling
from pipeline_lib.pseudo_label.temperature import fit_temperature
from pipeline_lib.stores.logits_store import LogitsStore

from . import run_standalone


def pseudo_label(
    round_name: str = typer.Option(..., "--round", help="The round (r1, r2…) whose pseudo labels to make."),
    params: Path = typer.Option(Path("params.yaml"), help="Parameter file (reads pseudo_label.*, "
                                "rounds.<round>.labeling_ratio)."),
    prepared: Path = typer.Option(Path("data/prepared"), help="Prepared-dataset directory."),
    outputs: Path = typer.Option(Path("outputs"), help="Root of the per-round output directories."),
) -> None:
    """Write outputs/<round>/pseudo_labels.zarr, pseudo_label_stats.json and class_distribution.csv."""
    p = Params.load(params)
    schedule = round_schedule(p)
    if round_name not in schedule:
        raise UserError(f"unknown round {round_name!r}; {p.source} defines rounds {', '.join(schedule) or 'none'}")
    method = p.get("pseudo_label.method", str, one_of(*METHODS))
    spec = load_spec(prepared)
    paths = RoundPaths.of(outputs, round_name)
    class_names = list(spec.classes.names)

    temperature = 1.0
    if p.get("pseudo_label.temperature_scaling", bool):
        labeled = read_split(prepared, "labeled", spec)
        store = LogitsStore.open(paths.labeled_logits, expect_classes=class_names,
                                 expect_image_ids=[s.id for s in labeled])
        # Lazy sequences: one image's logits and label in memory at a time.
        temperature = fit_temperature(LazySequence(len(store), store.logits),
                                      LazySequence(len(labeled), lambda i: load_label(labeled[i].label, spec)))
        typer.echo(f"fitted temperature T = {temperature:.4f} on {len(labeled)} labelled images")

    unlabeled = {s.id: s for s in read_split(prepared, "unlabeled", spec)}

    def ground_truth(image_id: str) -> np.ndarray | None:
        sample = unlabeled.get(image_id)
        return None if sample is None or sample.label is None else load_label(sample.label, spec)

    stats = run_pseudo_labeling(
        paths.logits, paths.pseudo_labels, paths.pseudo_label_stats, paths.class_distribution_plot,
        labeled_shares=load_class_distribution(prepared), method=method,
        labeling_ratio=schedule[round_name].labeling_ratio, seed=p.get("pseudo_label.seed", int),
        temperature=temperature, ground_truth=ground_truth,
        workers=p.get("pseudo_label.workers", int, positive), expect_classes=class_names,
        expect_image_ids=list(unlabeled))
    typer.echo(f"{round_name}: {method} labelled {stats['fraction_labeled']:.3f} of pixels, "
               f"KL(labelled‖pseudo) = {stats['kl_divergence']:.4f} → {paths.pseudo_labels}")


class LazySequence(Sequence):
    """``items[i]`` computed on access, so a long list of arrays never sits in memory at once."""

    def __init__(self, length: int, item: Callable[[int], np.ndarray]) -> None:
        self.length, self.item = length, item

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> np.ndarray:
        if not 0 <= index < self.length:
            raise IndexError(index)
        return self.item(index)


if __name__ == "__main__":
    run_standalone(pseudo_label)
