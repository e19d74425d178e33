"""The paper's Table 4 ablation on the current dataset: experiment names, their -S overrides, and the table.

Each variant is a pseudo-labelling method with or without temperature scaling ("cbst+ts"), or the
labelled-only control ("supervised": every round's iterations without pseudo labels, which tells the pseudo
labels' gain from that of training longer); each runs as a DVC experiment named ``<variant>[-ts]-s<seed>``.
The table reads the experiments' metrics files: the first round (k = 1) and the last round (iterative
training), against the supervised baseline (round r0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from pipeline_lib.errors import UserError
from pipeline_lib.layout import RoundPaths
from pipeline_lib.settings import BASELINE_ROUND, METHODS

PAPER_VARIANTS = ("st", "st+ts", "cbst", "cbst+ts", "da+ts", "dars")
CONTROL = "supervised"


@dataclass(frozen=True)
class Variant:
    method: str
    temperature_scaling: bool

    @classmethod
    def parse(cls, text: str) -> "Variant":
        method, _, suffix = text.strip().lower().partition("+")
        if method == CONTROL and not suffix:
            return cls(CONTROL, False)
        if method not in METHODS or suffix not in ("", "ts"):
            raise UserError(f"unknown variant {text!r}; use a method ({', '.join(METHODS)}) optionally with "
                            f"'+ts', or {CONTROL!r} (the labelled-only control)")
        return cls(method, suffix == "ts")

    @property
    def label(self) -> str:
        if self.method == CONTROL:
            return "labelled only, same iterations"
        return self.method.upper() + ("+TS" if self.temperature_scaling else "")

    def experiment_name(self, seed: int) -> str:
        return f"{self.method}{'-ts' if self.temperature_scaling else ''}-s{seed}"

    def overrides(self, seed: int) -> list[str]:
        """``dvc exp run -S`` arguments for this variant and seed."""
        seeds = ["-S", f"seed={seed}", "-S", f"pseudo_label.seed={seed}"]
        if self.method == CONTROL:
            return ["-S", "self_training.pseudo_fraction=0", *seeds]
        return ["-S", f"pseudo_label.method={self.method}",
                "-S", f"pseudo_label.temperature_scaling={str(self.temperature_scaling).lower()}", *seeds]


def metric_columns(record: dict, metrics_file: str) -> dict:
    """The metrics of one ``metrics_file`` from a flat ``dvc.api.exp_show`` record."""
    prefix = f"{metrics_file}:"
    return {key[len(prefix):]: value for key, value in record.items() if key.startswith(prefix)}


def _mean_std(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return mean, std


def _cell(values: list[float | None], scale: float = 100.0) -> str:
    present = [v * scale for v in values if isinstance(v, (int, float))]
    if not present:
        return "–"
    mean, std = _mean_std(present)
    return f"{mean:.1f}" if len(present) == 1 else f"{mean:.1f}±{std:.1f}"


def format_table(title: str, rows: list[tuple[str, list[dict]]], class_names: list[str],
                 baseline: list[dict]) -> str:
    """A markdown table in the shape of the paper's Table 4.

    ``rows`` pairs a label with one metrics dict per seed (keys ``iou.<class>``, ``tail_miou``, ``miou``);
    ``baseline`` holds the supervised model's metrics per seed, for the gain column.
    """
    header = ["method", *class_names, "tail mIoU", "mIoU", "gain"]
    lines = [f"**{title}**", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    base_miou = [m.get("miou") for m in baseline if m.get("miou") is not None]
    base_mean = _mean_std([v * 100 for v in base_miou])[0] if base_miou else None
    for label, runs in [("supervised baseline", baseline), *rows]:
        mious = [m.get("miou") for m in runs if m.get("miou") is not None]
        gain = "–"
        if mious and base_mean is not None and label != "supervised baseline":
            gain = f"{_mean_std([v * 100 for v in mious])[0] - base_mean:+.1f}"
        cells = [_cell([m.get(f"iou.{name}") for m in runs]) for name in class_names]
        lines.append("| " + " | ".join([label, *cells, _cell([m.get("tail_miou") for m in runs]),
                                         _cell(mious), gain]) + " |")
    return "\n".join(lines) + "\n"


def parse_variants(text: str) -> list[Variant]:
    return [Variant.parse(v) for v in text.split(",") if v.strip()]


def parse_seeds(text: str) -> list[int]:
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise UserError(f"--seeds must be comma-separated integers, got {text!r}") from None


# Experiments hang off the commit they were queued from; look a few commits back so that committing
# (say, the README) after queueing does not hide them.
COMMITS_SEARCHED = 20


def experiment_records() -> dict[str, dict]:
    """Every DVC experiment of the last COMMITS_SEARCHED commits, by name, as ``dvc.api.exp_show`` flat records."""
    import dvc.api

    return {r["Experiment"]: r for r in dvc.api.exp_show(num=COMMITS_SEARCHED) if r.get("Experiment")}


def ablation_table(records: dict[str, dict], variants: list[Variant], seeds: list[int], rounds: list[str],
                   class_names: list[str], outputs: Path = Path("outputs")) -> str:
    """The Table-4 markdown of the finished experiments: round ``rounds[0]`` (k = 1) and, with more rounds, the
    last one (iterative training), each against the supervised baseline; unfinished experiments are listed."""
    missing = [v.experiment_name(s) for v in variants for s in seeds if v.experiment_name(s) not in records]
    if len(missing) == len(variants) * len(seeds):
        raise UserError(f"no finished experiment of this grid; missing {', '.join(missing[:6])}… — run "
                        "`dars ablation run` (or `dars ablation queue` then `dvc exp run --run-all`)")

    def metrics_file(round_name: str) -> str:
        return RoundPaths.of(outputs, round_name).metrics.as_posix()

    def metrics_of(variant: Variant, round_name: str) -> list[dict]:
        return [metric_columns(records[name], metrics_file(round_name)) for s in seeds
                if (name := variant.experiment_name(s)) in records]

    baseline = [metric_columns(records[name], metrics_file(BASELINE_ROUND)) for s in seeds for v in variants
                if (name := v.experiment_name(s)) in records][:len(seeds)]
    sections = [(f"k = 1 (round {rounds[0]}), val mIoU ×100", rounds[0])]
    if len(rounds) > 1:
        sections.append((f"iterative training (round {rounds[-1]}), val mIoU ×100", rounds[-1]))
    text = "\n".join(format_table(title, [(v.label, metrics_of(v, r)) for v in variants], class_names, baseline)
                     for title, r in sections)
    if missing:
        text += f"\nNot finished: {', '.join(missing)}\n"
    return text
