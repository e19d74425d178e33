"""The ablation grid's committed record: each finished experiment's scores, kept across sessions and clones.

DVC experiments live in one clone's ``.git`` only (a fresh checkout has none), so a three-seed grid run over
several working sessions would lose the seeds of the earlier ones. Each finished experiment of the grid is
therefore copied once into a committed JSON file (``outputs/ablation_runs.json``): per round its evaluation
(mIoU, tail and head mIoU, per-class IoU) and, for self-training rounds, the pseudo labels' summary and class
shares (labelled vs pseudo, the paper's Figure 1). The table and the figure read the record only. A row is
identified by its grid key (:func:`pipeline_lib.experiments.grid.grid_key`), variant and seed; rows already recorded
are kept, never replaced, so a committed result stays what it was (delete its row to measure it again).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from pipeline_lib.errors import UserError
from pipeline_lib.experiments.comparison import (
    RunResults,
    first_and_last,
    format_table,
    mean_std_cell,
    paired_difference,
)
from pipeline_lib.experiments.grid import CONTROL, Variant
from pipeline_lib.settings import BASELINE_ROUND

RECORD_VERSION = 1
EVALUATION_KEYS = ("miou", "tail_miou", "head_miou", "iou", "tail_classes", "trained_with")
PSEUDO_LABEL_KEYS = ("fraction_labeled", "pseudo_label_accuracy", "kl_divergence")


def record_row(variant: Variant, seed: int, grid: str, run: RunResults) -> dict | None:
    """The record's row of one experiment (``run`` read with the baseline and every self-training round), or
    None when a round has no evaluation yet (the experiment did not finish)."""
    if any(not evaluation or "miou" not in evaluation for evaluation in run.evaluation.values()):
        return None
    rounds = {}
    for round_name, evaluation in run.evaluation.items():
        entry = {key: evaluation[key] for key in EVALUATION_KEYS if key in evaluation}
        stats = run.pseudo_labels.get(round_name)
        if stats and variant.method != CONTROL:  # the control's rounds make pseudo labels but train without them
            entry["pseudo_labels"] = {key: stats[key] for key in PSEUDO_LABEL_KEYS if key in stats}
            entry["pseudo_labels"]["class_shares"] = {
                name: {"labeled": shares["labeled_share"], "pseudo": shares["pseudo_share"]}
                for name, shares in (stats.get("per_class") or {}).items()}
        rounds[round_name] = entry
    return {"grid": grid, "variant": variant.name, "seed": seed, "experiment": run.name, "rounds": rounds}


def read_record(path: str | os.PathLike) -> list[dict]:
    """The rows of a record file (none if it does not exist); UserError naming the file if it is not one."""
    path = Path(path)
    if not path.exists():
        return []
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("version") != RECORD_VERSION or not isinstance(data.get("runs"), list):
        raise UserError(f"{path}: not an ablation record (expected {{\"version\": {RECORD_VERSION}, \"runs\": "
                        "[...]}); move it away to start a new one")
    for index, row in enumerate(data["runs"]):
        if not (isinstance(row, dict) and isinstance(row.get("grid"), str) and isinstance(row.get("seed"), int)
                and isinstance(row.get("rounds"), dict)
                and all(isinstance(r, dict) and isinstance(r.get("miou"), (int, float))
                        for r in row["rounds"].values())):
            raise UserError(f"{path}: runs[{index}] is not a recorded run (grid, variant, seed, rounds with miou)")
        Variant.parse(str(row.get("variant")))  # a UserError names a variant it does not know
    return data["runs"]


def _identity(row: dict) -> tuple[str, str, int]:
    return row["grid"], row["variant"], row["seed"]


def merge_rows(rows: list[dict], new_rows: Sequence[dict]) -> tuple[list[dict], list[dict]]:
    """``rows`` with the new rows whose (grid, variant, seed) it does not hold yet, and those added."""
    held = {_identity(row) for row in rows}
    added = [row for row in new_rows if _identity(row) not in held]
    return [*rows, *added], added


def record_json(rows: Sequence[dict]) -> str:
    """The record file's text: rows ordered by grid, seed and variant, so that it diffs well."""
    ordered = sorted(rows, key=lambda row: (row["grid"], row["seed"], row["variant"]))
    return json.dumps({"version": RECORD_VERSION, "runs": ordered}, indent=1) + "\n"


def grid_rows(rows: Sequence[dict], grid: str, variants: Sequence[Variant], seeds: Sequence[int] | None) -> list[dict]:
    """The rows of this grid for these variants and (None: every recorded) seeds."""
    names = {variant.name for variant in variants}
    return [row for row in rows if row["grid"] == grid and row["variant"] in names
            and (seeds is None or row["seed"] in seeds)]


def recorded_seeds(rows: Sequence[dict]) -> list[int]:
    return sorted({row["seed"] for row in rows})


def training_precisions(rows: Sequence[dict]) -> str:
    """One line on where the grid's models were trained: one device and precision, or which seeds differ (their
    means then mix machines), and how many models do not say (recorded before checkpoints held it)."""
    seeds_by_label: dict[str, set[int]] = {}
    unknown = 0
    for row in rows:
        for entry in row["rounds"].values():
            trained_with = entry.get("trained_with")
            if trained_with is None:
                unknown += 1
            else:
                label = f"{trained_with['precision']} on {trained_with['device']}"
                seeds_by_label.setdefault(label, set()).add(row["seed"])
    not_saying = "saved before checkpoints recorded it"
    if not seeds_by_label:
        return f"Training precision not recorded (models {not_saying})."
    if len(seeds_by_label) > 1:
        groups = ", ".join(f"{label} (seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, sorted(seeds)))})"
                           for label, seeds in sorted(seeds_by_label.items()))
        line = (f"**Trained at different precisions**: {groups}; a mean over them mixes machines, and a "
                "difference between methods is only fair within one")
    else:
        line = f"Trained in {next(iter(seeds_by_label))}"
    if unknown:
        line += f"; {unknown} model{'s do' if unknown > 1 else ' does'} not say ({not_saying})"
    return line + "."


def _round_title(round_name: str, rounds: Sequence[str]) -> str:
    return "k = 1" if round_name == rounds[0] else "iterative"


def scores_table(by_identity: dict[tuple[str, int], dict], baseline: list[dict], variants: Sequence[Variant],
                 seeds: Sequence[int], rounds: Sequence[str]) -> str:
    """One row per method: mIoU, tail and head mIoU after the first and the last round, then each of those
    rounds' pseudo labels (share of pixels labelled, their accuracy, the KL divergence of their class
    distribution from the labelled one), mean ± std over the seeds."""
    shown = first_and_last(rounds)
    header = ["method"]
    for round_name in shown:
        title = _round_title(round_name, rounds)
        header += [f"{title} mIoU", f"{title} tail", f"{title} head"]
    for round_name in shown:
        header += [f"{round_name} labelled %", f"{round_name} accuracy %", f"{round_name} KL"]
    lines = ["**scores and pseudo labels, val ×100**", "", "| " + " | ".join(header) + " |",
             "|" + "---|" * len(header)]
    scores = ("miou", "tail_miou", "head_miou")
    pseudo_columns = len(shown) * 3
    lines.append("| " + " | ".join(["supervised baseline (r0)",
                                     *(mean_std_cell([b.get(key) for b in baseline]) for _ in shown for key in scores),
                                     *["–"] * pseudo_columns]) + " |")
    for variant in variants:
        recorded = [by_identity[(variant.name, s)]["rounds"] for s in seeds if (variant.name, s) in by_identity]
        cells = [mean_std_cell([(r.get(name) or {}).get(key) for r in recorded]) for name in shown for key in scores]
        for name in shown:
            pseudo = [(r.get(name) or {}).get("pseudo_labels") or {} for r in recorded]
            cells += [mean_std_cell([p.get("fraction_labeled") for p in pseudo]),
                      mean_std_cell([p.get("pseudo_label_accuracy") for p in pseudo]),
                      mean_std_cell([p.get("kl_divergence") for p in pseudo], scale=1.0, digits=3)]
        lines.append("| " + " | ".join([variant.label, *cells]) + " |")
    return "\n".join(lines) + "\n"


def comparisons(variants: Sequence[Variant]) -> list[tuple[Variant, Variant]]:
    """The pairs the differences table shows: each rule against the labelled-only control (its pseudo labels'
    gain), and DARS against each other rule."""
    control = Variant(CONTROL, False)
    dars = Variant("dars", False)
    pairs = [(v, control) for v in variants if v != control and control in variants]
    if dars in variants:
        pairs += [(dars, v) for v in variants if v not in (dars, control)]
    return pairs


def _score(by_identity: dict[tuple[str, int], dict], variant: Variant, seed: int, round_name: str,
           key: str) -> float | None:
    """One recorded score ×100, or None where the row, its round or the key is missing."""
    row = by_identity.get((variant.name, seed)) or {}
    value = (row.get("rounds", {}).get(round_name) or {}).get(key)
    return 100 * value if isinstance(value, (int, float)) else None


def _difference_cell(a: Sequence[float], b: Sequence[float]) -> str:
    if not a:
        return "–"
    difference = paired_difference(a, b)
    spread = f"{difference.spread:.1f}" if len(a) > 1 else "–"
    per_seed = ", ".join(f"{d:+.1f}" for d in difference.per_seed)
    verdict = "**resolved**" if difference.resolved else "unresolved"
    return f"{difference.mean:+.1f} ({per_seed}; spread {spread}) {verdict}"


def differences_table(by_identity: dict[tuple[str, int], dict], variants: Sequence[Variant],
                      seeds: Sequence[int], rounds: Sequence[str]) -> str:
    """A − B per comparison (:func:`comparisons`) on mIoU and tail mIoU after the first and the last round: the
    mean difference over the seeds both have, each seed's, the seeds' spread, and whether it is resolved (see
    :func:`pipeline_lib.experiments.comparison.paired_difference`)."""
    shown = first_and_last(rounds)
    header = ["A − B", *(f"{_round_title(r, rounds)} {score}" for r in shown for score in ("mIoU", "tail"))]
    lines = ["**differences, val ×100**: mean (each seed's; spread: the larger ± of A and B) and verdict — "
             "resolved when every seed agrees in sign and the mean exceeds the spread", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for a, b in comparisons(variants):
        if not any((a.name, s) in by_identity and (b.name, s) in by_identity for s in seeds):
            continue
        cells = []
        for round_name in shown:
            for key in ("miou", "tail_miou"):
                pairs = [(_score(by_identity, a, s, round_name, key), _score(by_identity, b, s, round_name, key))
                         for s in seeds]
                present = [(x, y) for x, y in pairs if x is not None and y is not None]
                cells.append(_difference_cell([x for x, _ in present], [y for _, y in present]))
        lines.append("| " + " | ".join([f"{a.label} − {b.label}", *cells]) + " |")
    return "\n".join(lines) + "\n"


def check_round0_shared(rows: Sequence[dict]) -> None:
    """UserError unless the rows of each grid and seed start from one round 0 (the same scores to the last
    digit). A seed's variants are compared pair by pair, which is fair only from one teacher; a round 0 trained
    again on another machine kind or by other training code is another model (the grid's rows can be recorded
    over several sessions, each on whatever machine it got)."""
    by_seed: dict[tuple[str, int], dict[str, list[str]]] = {}
    for row in rows:
        round0 = row["rounds"][BASELINE_ROUND]
        scores = json.dumps({key: round0.get(key) for key in ("miou", "tail_miou", "iou")}, sort_keys=True)
        by_seed.setdefault((row["grid"], row["seed"]), {}).setdefault(scores, []).append(row["variant"])
    for (grid, seed), groups in sorted(by_seed.items()):
        if len(groups) > 1:
            found = "; ".join(f"{', '.join(variants)}: r0 mIoU {100 * json.loads(scores)['miou']:.2f}"
                              for scores, variants in groups.items())
            raise UserError(f"seed {seed} of grid {grid}: its rows start from different round-0 models ({found}), "
                            "trained on other machines or by other code; delete that seed's rows from the record "
                            "and run its variants again in one go")


def ablation_table(rows: Sequence[dict], variants: Sequence[Variant], seeds: Sequence[int],
                   rounds: Sequence[str]) -> str:
    """The Table-4 markdown of one grid's recorded rows: the scores and pseudo labels per method, then
    per class round ``rounds[0]`` (k = 1) and, with more rounds, the last one (iterative training), each below
    the supervised baseline (round r0, one per seed: it does not depend on the variant), then the differences
    between methods with their verdicts; the (variant, seed) pairs not recorded are listed."""
    by_identity = {(row["variant"], row["seed"]): row for row in rows}
    missing = [v.name + f" seed {s}" for v in variants for s in seeds if (v.name, s) not in by_identity]
    if len(missing) == len(variants) * len(seeds):
        raise UserError("no finished experiment of this grid is recorded; run `dars ablation run` (or "
                        "`dars ablation queue`, `dvc exp run --run-all`, then `dars ablation table`)")
    check_round0_shared(rows)
    class_names: list[str] = next(list(row["rounds"][BASELINE_ROUND].get("iou") or {}) for row in rows)

    def evaluations(variant: Variant, round_name: str) -> list[dict | None]:
        return [by_identity[(variant.name, s)]["rounds"].get(round_name) for s in seeds
                if (variant.name, s) in by_identity]

    baseline = [next(row for row in rows if row["seed"] == s)["rounds"][BASELINE_ROUND]
                for s in seeds if any(row["seed"] == s for row in rows)]
    sections = [(f"k = 1 (round {rounds[0]}), val mIoU ×100", rounds[0])]
    if len(first_and_last(rounds)) > 1:
        sections.append((f"iterative training (round {rounds[-1]}), val mIoU ×100", rounds[-1]))
    text = (f"Seeds {', '.join(map(str, seeds))}; a cell is the mean ± sample std over the recorded seeds. "
            if len(seeds) > 1 else f"Seed {seeds[0]} only: a cell is its score, with no spread to judge it by. ")
    text += training_precisions(rows) + "\n\n"
    text += scores_table(by_identity, baseline, variants, seeds, rounds) + "\n"
    text += "\n".join(format_table(title, [("supervised baseline", baseline),
                                           *((v.label, evaluations(v, r)) for v in variants)], class_names)
                      for title, r in sections)
    text += "\n" + differences_table(by_identity, variants, seeds, rounds)
    if missing:
        text += f"\nNot recorded: {', '.join(missing)}\n"
    return text


def record_grid(variants: Sequence[Variant], seeds: Sequence[int] | None, record: Path, params: Path,
                report: Callable[[str], None] = print) -> tuple[list[dict], list[str]]:
    """Bring the record up to date with this grid's finished experiments (each copied once, rows already there
    kept), and return this grid's rows (of ``seeds``, or all recorded) and its rounds."""
    from pipeline_lib.atomic import write_text
    from pipeline_lib.experiments.comparison import experiment_names, read_runs
    from pipeline_lib.experiments.grid import COMMITS_SEARCHED, load_grid, parse_experiment_name

    _, grid, rounds = load_grid(params)
    rows = read_record(record)
    held = {(row["grid"], row["variant"], row["seed"]) for row in rows}
    new_rows = []
    for name in experiment_names(COMMITS_SEARCHED, finished=True):
        parsed = parse_experiment_name(name)
        if parsed is None or parsed[2] != grid or (grid, parsed[0].name, parsed[1]) in held:
            continue
        [results] = read_runs([name], [BASELINE_ROUND, *rounds])
        row = record_row(parsed[0], parsed[1], grid, results)
        if row is not None:  # None: a round without its evaluation
            new_rows.append(row)
    rows, added = merge_rows(rows, new_rows)
    if added:
        write_text(record, record_json(rows))
        report(f"recorded {', '.join(row['experiment'] for row in added)} in {record}")
    return grid_rows(rows, grid, variants, seeds), rounds
