"""Measuring the round-0 curve: one DVC experiment per missing budget and seed, the CSV rewritten as points
finish, the figure and the plateau verdict (the curve's rows and recipes: :mod:`pipeline_lib.experiments.curve`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from pipeline_lib.experiments.curve import (
    curve_csv,
    curve_experiment_name,
    curve_overrides,
    curve_recipes_json,
    curve_recipes_path,
    curve_row,
    plateau_verdict,
    read_curve,
    read_curve_recipes,
    recipe_key,
    recipe_labels,
    recipe_settings,
)
from pipeline_lib.experiments.dvc_git import run_dvc, run_queued
from pipeline_lib.params import Params


def measure_curve(budgets: Sequence[int], seeds: Sequence[int], jobs: int, out: Path, figure: Path, params: Path,
                  report: Callable[[str], None] = print) -> None:
    """Measure the points of the curve of ``params``' recipe that ``out`` lacks (one DVC experiment per budget and
    seed, ``jobs`` at a time, the CSV rewritten after each batch so that a curve resumes from its last), keep
    what each recipe sets beside the CSV, draw the whole CSV and report, per seed, the plateau verdict."""
    from pipeline_lib.atomic import write_text
    from pipeline_lib.check import check_params
    from pipeline_lib.experiments.comparison import experiment_names, experiment_states, read_runs
    from pipeline_lib.experiments.figures import plot_round0_curve
    from pipeline_lib.experiments.grid import COMMITS_SEARCHED, WORKSPACE_PARAMS, experiment_overrides
    from pipeline_lib.settings import BASELINE_ROUND, DataSettings

    loaded = Params.load(params)
    check_params(loaded)
    dataset, recipe = DataSettings.from_params(loaded).dataset, recipe_key(loaded)
    rows = read_curve(out)
    # What each recipe is, beside the CSV, so that the figure can name a recipe by what sets it apart.
    recipes_path = curve_recipes_path(out)
    recipes = read_curve_recipes(recipes_path)
    settings = recipe_settings(loaded)
    if recipes.get(recipe) != settings:
        recipes[recipe] = settings
        write_text(recipes_path, curve_recipes_json(recipes))
    done = {(row["recipe"], row["iterations"], row["seed"]) for row in rows}
    existing = set(experiment_names(COMMITS_SEARCHED))
    workspace = Params.load(WORKSPACE_PARAMS)
    points = []
    for seed in seeds:
        for budget in budgets:
            if (recipe, budget, seed) in done:
                report(f"recipe {recipe}, {budget} iterations, seed {seed}: in {out}, kept")
            else:
                points.append((budget, seed, curve_experiment_name(budget, seed, recipe)))
    for start in range(0, len(points), jobs):
        batch = points[start:start + jobs]
        queued = [(budget, seed, name) for budget, seed, name in batch if name not in existing]
        for budget, seed, name in queued:
            overrides = experiment_overrides(workspace, loaded, curve_overrides(budget, seed, dataset))
            run_dvc("exp", "run", "--queue", "-n", name, *overrides, "evaluate_r0", report=report)
        if queued:
            run_queued([name for _, _, name in queued], len(queued),
                       lambda: experiment_states(COMMITS_SEARCHED), report=report)
        for budget, seed, name in batch:
            [finished] = read_runs([name], [BASELINE_ROUND])
            rows.append(curve_row(recipe, budget, seed, name, finished.evaluation[BASELINE_ROUND]))
            write_text(out, curve_csv(rows))
            report(f"recipe {recipe}, {budget} iterations, seed {seed}: mIoU {100 * float(rows[-1]['miou']):.1f} → "
                   f"{out}")
    drawn = {row["recipe"] for row in rows}
    plot_round0_curve(figure, rows, recipe_labels({key: recipes[key] for key in drawn if key in recipes}))
    report(f"wrote {figure}")
    for seed in seeds:
        report(plateau_verdict(rows, recipe, seed))
