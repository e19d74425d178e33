"""Tables that compare runs: per-class IoU and the summary of any list of DVC experiments or git revisions
(`dars compare`), in the shape of the paper's Table 4 (which the ablation table uses too).

A run is named as `dvc exp show` names it: an experiment name, or any git revision (branch, tag, sha,
``HEAD~1``), or ``workspace`` for the working tree. Each round's whole evaluation (``evaluation.json``) and
pseudo-label statistics (``pseudo_label_stats.json``: the summary DVC shows as metrics, and per class the
labelled and pseudo-label shares) are read from the run through ``DVCFileSystem`` (see
:mod:`pipeline_lib.inspection.artifacts`): both are cached DVC outputs (an uncached one would keep its stage
out of DVC's run cache), so an experiment's come from the local DVC cache and nothing has to be checked out.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pipeline_lib.errors import UserError
from pipeline_lib.layout import RoundPaths

WORKSPACE = "workspace"


@dataclass
class RunResults:
    """What one run holds for each round: its evaluation and (self-training rounds) pseudo-label statistics;
    None where the run has no such file."""

    name: str
    evaluation: dict[str, dict | None] = field(default_factory=dict)
    pseudo_labels: dict[str, dict | None] = field(default_factory=dict)


# `dvc exp show`'s State of an experiment with no results to read: queued, still running, or stopped by an
# error (a finished one says Success, or nothing once DVC no longer tracks its task).
UNFINISHED_STATES = ("Queued", "Running", "Failed")


def experiment_names(commits: int = 1, finished: bool = False) -> list[str]:
    """The names of the DVC experiments of the last ``commits`` commits (newest first); with ``finished``, only
    those that ran to the end, whose results can be read (reading a queued one's would fail)."""
    import dvc.api

    return [r["Experiment"] for r in dvc.api.exp_show(num=commits)
            if r.get("Experiment") and not (finished and r.get("State") in UNFINISHED_STATES)]


def experiment_states(commits: int = 1) -> dict[str, str]:
    """Each DVC experiment's ``dvc exp show`` State (Queued, Running, Failed, Success, or "" once DVC no longer
    tracks its task), for the experiments of the last ``commits`` commits."""
    import dvc.api

    return {r["Experiment"]: r.get("State") or "" for r in dvc.api.exp_show(num=commits) if r.get("Experiment")}


def read_runs(names: Sequence[str], rounds: Sequence[str], repo_root: str | os.PathLike = ".",
              outputs: str | os.PathLike = "outputs") -> list[RunResults]:
    """Every round's results of each named run (``rounds`` includes the baseline round if it is wanted)."""
    from pipeline_lib.artifact_source import ArtifactSource

    runs = []
    for name in names:
        with ArtifactSource(repo_root, None if name == WORKSPACE else name) as source:
            run = RunResults(name)
            for round_name in rounds:
                paths = RoundPaths.of(Path(outputs), round_name)
                run.evaluation[round_name] = source.read_json_object(paths.evaluation)
                run.pseudo_labels[round_name] = source.read_json_object(paths.pseudo_label_stats)
            runs.append(run)
    return runs


def class_names_of(runs: Sequence[RunResults]) -> list[str]:
    """The class names of the runs' evaluations (those of the first evaluation found); UserError if none has one."""
    for run in runs:
        for evaluation in run.evaluation.values():
            if evaluation and isinstance(evaluation.get("iou"), dict):
                return list(evaluation["iou"])
    raise UserError(f"no evaluation.json in {', '.join(run.name for run in runs)}: run the pipeline "
                    "(`dvc repro` or `dvc exp run`) first")


def _mean_std(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return mean, std


def mean_std_cell(values: Sequence[float | None], scale: float = 100.0, digits: int = 1) -> str:
    """Mean ± sample std of the values present (×``scale``, ``digits`` decimals); "–" when none is."""
    present = [v * scale for v in values if isinstance(v, (int, float))]
    if not present:
        return "–"
    mean, std = _mean_std(present)
    return f"{mean:.{digits}f}" if len(present) == 1 else f"{mean:.{digits}f}±{std:.{digits}f}"


@dataclass(frozen=True)
class Difference:
    """Method A − method B on the seeds both have: per seed, the mean, and whether it is resolved."""

    per_seed: tuple[float, ...]
    mean: float
    spread: float  # the larger of A's and B's sample std over those seeds (0 with one seed)
    resolved: bool


def paired_difference(a: Sequence[float], b: Sequence[float]) -> Difference:
    """A − B, seed by seed (``a[i]`` and ``b[i]`` are one seed's scores). Resolved only when there are at least
    two seeds, every seed's difference has the mean's sign, and the mean is larger than the seeds' spread: the
    larger sample std of the two methods' scores — what a table cell's ± shows. A difference within it could be
    the seed's, not the method's."""
    if len(a) != len(b) or not a:
        raise ValueError(f"paired_difference needs one score of each method per seed, got {len(a)} and {len(b)}")
    per_seed = tuple(x - y for x, y in zip(a, b))
    mean = sum(per_seed) / len(per_seed)
    spread = max(_mean_std(list(a))[1], _mean_std(list(b))[1])
    same_sign = all(d > 0 for d in per_seed) or all(d < 0 for d in per_seed)
    return Difference(per_seed, mean, spread, len(per_seed) > 1 and same_sign and abs(mean) > spread)


def _mean(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if isinstance(v, (int, float))]
    return _mean_std(present)[0] if present else None


def first_and_last(rounds: Sequence[str]) -> list[str]:
    """The rounds a per-class table shows: the first and the last (one when they are the same)."""
    return list(dict.fromkeys([rounds[0], rounds[-1]]))


def format_table(title: str, rows: list[tuple[str, list[dict | None]]], class_names: list[str],
                 first_column: str = "method") -> str:
    """A markdown table in the shape of the paper's Table 4: per-class IoU, tail mIoU, mIoU (×100) and the
    mIoU gain over the first row.

    ``rows`` pairs a label with one evaluation dict (``evaluation.json``: see
    :func:`pipeline_lib.evaluation.metrics.segmentation_metrics`)
    per seed, None for a missing one; a cell is the mean ± std over the seeds that have the value.
    """
    header = [first_column, *class_names, "tail mIoU", "mIoU", "gain"]
    lines = [f"**{title}**", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    present = [[m for m in runs if m is not None] for _, runs in rows]
    reference = _mean([m.get("miou") for m in present[0]]) if rows else None
    for index, ((label, _), runs) in enumerate(zip(rows, present)):
        miou = _mean([m.get("miou") for m in runs])
        gain = f"{100 * (miou - reference):+.1f}" if index and miou is not None and reference is not None else "–"
        cells = [mean_std_cell([(m.get("iou") or {}).get(name) for m in runs]) for name in class_names]
        lines.append("| " + " | ".join([label, *cells, mean_std_cell([m.get("tail_miou") for m in runs]),
                                         mean_std_cell([m.get("miou") for m in runs]), gain]) + " |")
    return "\n".join(lines) + "\n"


def summary_table(runs: list[RunResults], rounds: Sequence[str]) -> str:
    """One row per run: each round's mIoU and tail mIoU, and each self-training round's share of pixels
    pseudo-labelled and their accuracy (×100)."""
    with_pseudo_labels = {r for r in rounds if any(run.pseudo_labels.get(r) for run in runs)}
    header = ["run"]
    for round_name in rounds:
        header += [f"{round_name} mIoU", f"{round_name} tail"]
        if round_name in with_pseudo_labels:
            header += [f"{round_name} labelled %", f"{round_name} label acc"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for run in runs:
        cells = [run.name]
        for round_name in rounds:
            evaluation = run.evaluation.get(round_name) or {}
            cells += [mean_std_cell([evaluation.get("miou")]), mean_std_cell([evaluation.get("tail_miou")])]
            if round_name in with_pseudo_labels:
                pseudo = run.pseudo_labels.get(round_name) or {}
                cells += [mean_std_cell([pseudo.get("fraction_labeled")]),
                          mean_std_cell([pseudo.get("pseudo_label_accuracy")])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def compare_runs(runs: list[RunResults], rounds: Sequence[str], class_names: list[str]) -> str:
    """`dars compare`'s report: the summary of every round, then the per-class table of the first and the
    last of ``rounds`` (gain over the first run)."""
    shown = first_and_last(rounds)
    missing = [f"{run.name} ({round_name})" for run in runs for round_name in shown
               if run.evaluation.get(round_name) is None]
    parts = ["**summary, val ×100**", "", summary_table(runs, rounds)]
    for round_name in shown:
        parts.append(format_table(f"round {round_name}, val IoU ×100",
                                  [(run.name, [run.evaluation.get(round_name)]) for run in runs], class_names,
                                  first_column="run"))
    if missing:
        parts.append(f"No evaluation.json: {', '.join(missing)}\n")
    return "\n".join(parts)
