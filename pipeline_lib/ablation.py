"""The paper's Table 4 ablation on the current dataset: experiment names, their -S overrides, and the table.

Each variant is a pseudo-labelling method with or without temperature scaling ("cbst+ts"), or the
labelled-only control ("supervised": every round's iterations without pseudo labels, which tells the pseudo
labels' gain from that of training longer); each runs as a DVC experiment named
``<variant>[-ts]-s<seed>-<grid key>``, the key naming the grid's settings (:func:`grid_key`). Finished
experiments are copied into a committed record (:mod:`pipeline_lib.ablation_record`), which the table and the
figure read: the first round (k = 1) and the last round (iterative training), against the supervised baseline
(round r0). The round-0 curve (the baseline against its training budget) tells whether that baseline has
converged.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from pipeline_lib.errors import UserError
from pipeline_lib.settings import METHODS, Params

T = TypeVar("T")

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

    @property
    def name(self) -> str:
        """How ``--variants`` spells it (``cbst+ts``), and the record too."""
        return self.method + ("+ts" if self.temperature_scaling else "")

    def experiment_name(self, seed: int, grid: str) -> str:
        return f"{self.method}{'-ts' if self.temperature_scaling else ''}-s{seed}-{grid}"

    def overrides(self, seed: int, dataset: str) -> list[str]:
        """``dvc exp run -S`` arguments for this variant and seed (a whole replicate, see seed_overrides)."""
        seeds = seed_overrides(seed, dataset)
        if self.method == CONTROL:
            return ["-S", "self_training.pseudo_fraction=0", *seeds]
        return ["-S", f"pseudo_label.method={self.method}",
                "-S", f"pseudo_label.temperature_scaling={str(self.temperature_scaling).lower()}", *seeds]


def parse_variants(text: str) -> list[Variant]:
    return [Variant.parse(v) for v in text.split(",") if v.strip()]


def parse_seeds(text: str) -> list[int]:
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise UserError(f"--seeds must be comma-separated integers, got {text!r}") from None


# The keys a variant or a seed sets (see Variant.overrides); every other parameter is the grid's.
VARIANT_AND_SEED_KEYS = ("pseudo_label.method", "pseudo_label.temperature_scaling", "seed", "pseudo_label.seed",
                         "data.split_seed", "synthetic.seed")
KEY_LENGTH = 8


def _without(params: Params, keys: tuple[str, ...]) -> dict:
    """A copy of ``params`` without the dotted ``keys`` (whole sections or single keys)."""
    data = json.loads(json.dumps(params.data))
    for key in keys:
        *parents, last = key.split(".")
        node = data
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(last, None)
    return data


def _hash_without(params: Params, keys: tuple[str, ...]) -> str:
    """A short hash of ``params`` without the dotted ``keys``; comments and key order do not change it."""
    text = json.dumps(_without(params, keys), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:KEY_LENGTH]


def grid_key(params: Params) -> str:
    """A short hash of the parameters a grid's experiments share: all of them but the keys a variant or a seed
    sets (VARIANT_AND_SEED_KEYS). Experiment names and record rows carry it, so runs of different settings (a
    longer round 0, another dataset) are never queued as done or averaged together."""
    return _hash_without(params, VARIANT_AND_SEED_KEYS)


_EXPERIMENT_NAME = re.compile(r"^(?P<method>[a-z]+)(?P<ts>-ts)?-s(?P<seed>\d+)-(?P<grid>[0-9a-f]+)$")


def parse_experiment_name(name: str) -> tuple[Variant, int, str] | None:
    """(variant, seed, grid key) of a grid experiment's name; None for any other name."""
    match = _EXPERIMENT_NAME.match(name)
    if not match or (match["method"] not in METHODS and not (match["method"] == CONTROL and not match["ts"])):
        return None
    return Variant(match["method"], bool(match["ts"])), int(match["seed"]), match["grid"]


def batches_sharing_round0(experiments_by_seed: dict[int, list[T]]) -> list[list[T]]:
    """The order in which a grid's experiments (any per-experiment item) run when several run at once: first one
    experiment per seed, whose stages all of that seed's variants share (prepare, round 0, the first round's
    inference and confidences) then sit in DVC's run cache; then every other one, which restores those stages
    from it instead of training the same round 0 at the same time as its siblings."""
    first = [items[0] for items in experiments_by_seed.values() if items]
    rest = [item for items in experiments_by_seed.values() for item in items[1:]]
    return [batch for batch in (first, rest) if batch]


def _hydra_value(value: object, key: str) -> str:
    """``value`` in the override grammar DVC's ``-S`` parses (Hydra's): strings quoted, so that spaces, colons
    and numbers-as-text survive."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        if "'" in value and '"' in value:
            raise UserError(f"{key}: a value with both quote characters cannot be passed to `dvc exp run -S`")
        quote = '"' if "'" in value else "'"
        return quote + value + quote
    if isinstance(value, list):
        return "[" + ",".join(_hydra_value(item, key) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{name}:{_hydra_value(item, key)}" for name, item in value.items()) + "}"
    raise UserError(f"{key}: a value of type {type(value).__name__} cannot be passed to `dvc exp run -S`")


def settings_overrides(workspace: Params, settings: Params, skip: tuple[str, ...] = ()) -> list[str]:
    """``dvc exp run -S`` arguments that turn ``workspace`` (the params.yaml an experiment starts from) into
    ``settings`` (another full parameter file: a benchmark's), key by key: changed values, added keys (``+``)
    and removed ones (``~``). Keys under ``skip`` (what a variant or a seed sets) are left to those."""
    overrides: list[str] = []

    def walk(old: dict, new: dict, prefix: str) -> None:
        for name, value in new.items():
            key = prefix + str(name)
            if key in skip:
                continue
            if name not in old:
                overrides.extend(["-S", f"+{key}={_hydra_value(value, key)}"])
            elif isinstance(value, dict) and isinstance(old[name], dict):
                walk(old[name], value, key + ".")
            elif old[name] is not None and isinstance(value, dict) != isinstance(old[name], dict):
                # a section for a value or back: OmegaConf assigns neither over the other
                overrides.extend(["-S", f"~{key}", "-S", f"+{key}={_hydra_value(value, key)}"])
            elif value != old[name] or type(value) is not type(old[name]):
                overrides.extend(["-S", f"{key}={_hydra_value(value, key)}"])
        for name in old:
            key = prefix + str(name)
            if name in new or key in skip:
                continue
            if old[name] is None:  # Hydra finds no value to delete
                raise UserError(f"{settings.source}: lacks '{key}', which {workspace.source} sets to null; "
                                f"add it ({key}: null) to {settings.source}")
            overrides.extend(["-S", f"~{key}"])

    walk(workspace.data, settings.data, "")
    return overrides


def seed_values(seed: int, dataset: str) -> dict[str, int]:
    """The keys one replicate sets: the training and sampling seeds, the labelled/unlabelled split and, for the
    embedded dataset (``dataset`` "synthetic"), the images themselves; one split and one set of images would
    leave their share of the spread unseen."""
    values = {"seed": seed, "pseudo_label.seed": seed, "data.split_seed": seed}
    return values | ({"synthetic.seed": seed} if dataset == "synthetic" else {})


def seed_overrides(seed: int, dataset: str) -> list[str]:
    """``-S`` arguments of one replicate (:func:`seed_values`)."""
    return [arg for key, value in seed_values(seed, dataset).items() for arg in ("-S", f"{key}={value}")]


def with_values(params: Params, values: dict[str, object]) -> dict:
    """A copy of ``params``' data with the dotted keys of ``values`` set (each key must exist: a replicate or a
    budget changes a value, it adds none)."""
    data = json.loads(json.dumps(params.data))
    for key, value in values.items():
        params.raw(key)  # a UserError names the file and a key it lacks
        *parents, last = key.split(".")
        node = data
        for part in parents:
            node = node[part]
        node[last] = value
    return data


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
    return _hash_without(params, NOT_ROUND0_KEYS)


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

    return flatten(_without(params, NOT_ROUND0_KEYS), "")


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


# The stages that make a round 0 (dvc.yaml's names), trained ahead in a clone by `dars ablation round0`.
ROUND0_STAGES = ("prepare", "train_r0", "evaluate_r0")


def round0_code(dvc_yaml: dict) -> list[str]:
    """The files and folders of code and data in the repository that the round-0 stages read (their ``deps``,
    without another stage's outputs and templated paths): a round 0 trained elsewhere is restored from DVC's run
    cache only where each of these is byte for byte the same."""
    stages = dvc_yaml.get("stages") or {}
    produced = {str(out if isinstance(out, str) else next(iter(out)))
                for stage in stages.values() for out in stage.get("outs") or []}
    return sorted({dep for name in ROUND0_STAGES for dep in (stages.get(name) or {}).get("deps") or []
                   if isinstance(dep, str) and "${" not in dep and dep not in produced})


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


# Experiments hang off the commit they were queued from; look a few commits back so that committing
# (say, the README) after queueing does not hide them.
COMMITS_SEARCHED = 20
