"""The round-0 curve: the supervised baseline's val mIoU against its training budget, the recipes it is measured
for, and whether a recipe's round 0 is on its plateau."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from pipeline_lib.errors import UserError
from pipeline_lib.experiments.grid import VARIANT_AND_SEED_KEYS, hash_without, params_without, seed_overrides
from pipeline_lib.params import Params

# The round-0 curve: the supervised baseline's val scores against its training budget, one experiment per budget
# (each its own full poly schedule, so a point is what training that long gives, not a checkpoint of a longer
# run). Its rows are a committed CSV, so a curve longer than one working session is resumed from it; each row
# names its recipe (recipe_key), so curves of several recipes (learning rates, crops) share the file unmixed.
CURVE_COLUMNS = ("recipe", "iterations", "seed", "miou", "tail_miou", "head_miou", "experiment")
# What round 0 does not read (it reads data, synthetic, seed, model, train, distributed, inference, evaluate),
# and what a curve point sets itself.
NOT_ROUND0_KEYS = ("rounds", "pseudo_label", "self_training", "train.iterations", *VARIANT_AND_SEED_KEYS)


def recipe_key(params: Params) -> str:
    """A short hash of what round 0 is trained and evaluated with, but its budget and seeds."""
    return hash_without(params, NOT_ROUND0_KEYS)


def recipe_settings(params: Params) -> dict[str, object]:
    """What :func:`recipe_key` hashes, as dotted keys and their values (a list or mapping is one value)."""
    def flatten(node: dict, prefix: str) -> dict[str, object]:
        flat: dict[str, object] = {}
        for name, value in node.items():
            if isinstance(value, dict) and value:
                flat.update(flatten(value, f"{prefix}{name}."))
            else:
                flat[f"{prefix}{name}"] = value
        return flat

    return flatten(params_without(params, NOT_ROUND0_KEYS), "")


def recipe_labels(settings_by_recipe: dict[str, dict]) -> dict[str, str]:
    """Each recipe's name for a reader: the keys on which the recipes differ, with its values
    ("train.base_lr=0.2"), and its hash; just the hash where nothing tells it apart."""
    keys = sorted({key for settings in settings_by_recipe.values() for key in settings})
    differing = [key for key in keys
                 if len({json.dumps(settings.get(key), sort_keys=True) for settings in settings_by_recipe.values()}) > 1]
    labels = {}
    for recipe, settings in settings_by_recipe.items():
        values = ", ".join(f"{key}={_shown(settings.get(key))}" for key in differing)
        labels[recipe] = f"{values} ({recipe})" if values else recipe
    return labels


def _shown(value: object) -> str:
    return "(unset)" if value is None else json.dumps(value) if isinstance(value, (list, dict)) else str(value)


def curve_recipes_path(curve: str | os.PathLike) -> Path:
    """Where the curve's recipes are written beside its CSV: ``round0_curve.csv`` → ``round0_curve.recipes.json``."""
    curve = Path(curve)
    return curve.with_name(f"{curve.stem}.recipes.json")


def read_curve_recipes(path: str | os.PathLike) -> dict[str, dict]:
    """The recipes file (hash → :func:`recipe_settings`), none if it does not exist; UserError naming the file
    if it is not one."""
    path = Path(path)
    if not path.exists():
        return {}
    try:
        recipes = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(recipes, dict) or not all(isinstance(v, dict) for v in recipes.values()):
        raise UserError(f"{path}: expected a mapping of recipe hash to its settings")
    return recipes


def curve_recipes_json(recipes: dict[str, dict]) -> str:
    return json.dumps(dict(sorted(recipes.items())), indent=1, sort_keys=True) + "\n"


def curve_experiment_name(iterations: int, seed: int, recipe: str) -> str:
    return f"r0-it{iterations}-s{seed}-{recipe}"


def curve_overrides(iterations: int, seed: int, dataset: str) -> list[str]:
    return ["-S", f"train.iterations={iterations}", *seed_overrides(seed, dataset)]


def parse_iterations(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise UserError(f"--iterations must be comma-separated positive integers, got {text!r}")
    return sorted(set(values))


def read_curve(path: str | os.PathLike) -> list[dict]:
    """The rows of a curve CSV (none if it does not exist); UserError naming the file if it is not one."""
    import csv

    path = Path(path)
    if not path.exists():
        return []
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if tuple(reader.fieldnames or ()) != CURVE_COLUMNS:
            raise UserError(f"{path}: not a round-0 curve (columns {reader.fieldnames}, expected "
                            f"{', '.join(CURVE_COLUMNS)}); move it away to start a new one")
        try:
            return [{**row, "iterations": int(row["iterations"]), "seed": int(row["seed"])} for row in reader]
        except ValueError as exc:
            raise UserError(f"{path}: a row's iterations or seed is not an integer ({exc})") from None


def curve_row(recipe: str, iterations: int, seed: int, experiment: str, evaluation: dict | None) -> dict:
    """One CSV row from an experiment's round-0 evaluation.json; UserError if it has none."""
    if not evaluation or "miou" not in evaluation:
        raise UserError(f"experiment {experiment!r} has no outputs/r0/evaluation.json: it did not finish")
    return {"recipe": recipe, "iterations": iterations, "seed": seed, "miou": f"{evaluation['miou']:.6f}",
            "tail_miou": f"{evaluation['tail_miou']:.6f}" if evaluation.get("tail_miou") is not None else "",
            "head_miou": f"{evaluation['head_miou']:.6f}" if evaluation.get("head_miou") is not None else "",
            "experiment": experiment}


# #15's test of a converged round 0: doubling its budget gains less than half a point of val mIoU.
PLATEAU_GAIN = 0.005


def doubling_gains(rows: Sequence[dict], recipe: str, seed: int) -> list[tuple[int, int, float]]:
    """(budget, twice the budget, val mIoU gain) for each of the recipe's and seed's budgets whose double is
    measured too, in budget order; the gain is a fraction, as the rows hold it."""
    miou = {row["iterations"]: float(row["miou"]) for row in rows
            if row["recipe"] == recipe and row["seed"] == seed}
    return [(budget, 2 * budget, miou[2 * budget] - miou[budget]) for budget in sorted(miou) if 2 * budget in miou]


def plateau_verdict(rows: Sequence[dict], recipe: str, seed: int) -> str:
    """One line on whether the recipe's round 0 (this seed) is on its plateau: its last measured doubling and
    the gain it brought, against :data:`PLATEAU_GAIN`."""
    gains = doubling_gains(rows, recipe, seed)
    if not gains:
        return f"recipe {recipe}, seed {seed}: no budget and its double measured yet: plateau unknown"
    budget, doubled, gain = gains[-1]
    verdict = "on its plateau" if gain < PLATEAU_GAIN else "not on its plateau"
    return (f"recipe {recipe}, seed {seed}: {budget} → {doubled} iterations gains {100 * gain:+.2f} mIoU: "
            f"{verdict} (a doubling gaining < {100 * PLATEAU_GAIN:.1f})")


def curve_csv(rows: list[dict]) -> str:
    """The curve's CSV text, rows ordered by recipe, seed and iterations."""
    lines = [",".join(CURVE_COLUMNS)]
    for row in sorted(rows, key=lambda r: (r["recipe"], int(r["seed"]), int(r["iterations"]))):
        lines.append(",".join(str(row[column]) for column in CURVE_COLUMNS))
    return "\n".join(lines) + "\n"
