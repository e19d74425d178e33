"""ablation: the paper's Table 4 grid (ST, CBST, DA, DARS, ±TS) as queued DVC experiments, its committed record,
table and figures, and the round-0 curve."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import typer

from pipeline_lib.ablation import CONTROL, PAPER_VARIANTS, ROUND0_STAGES
from pipeline_lib.errors import UserError
from pipeline_lib.settings import Params
from stages import reports_user_errors

app = typer.Typer(help="Run the paper's ablation grid as DVC experiments and print a Table-4-style comparison.",
                  no_args_is_help=True, rich_markup_mode=None)

VARIANTS_HELP = f"Comma-separated variants: method[+ts] with method in st, cbst, da, dars, or {CONTROL} (the " \
                f"rounds' iterations on labelled images only). Default: the paper's Table 4 rows " \
                f"{','.join(PAPER_VARIANTS)}."


def _dvc(*args: str, cwd: Path | None = None) -> None:
    """Run DVC here, or in the checkout ``cwd`` (whose stages run its own code: see stages/cli.py)."""
    typer.echo("$ dvc " + " ".join(args) + (f"   (in {cwd})" if cwd else ""))
    # The stages' commands (`dars …`) are found beside this interpreter, also when its environment is not
    # activated: DVC runs them, or its queue's workers do, through PATH.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    if subprocess.run([sys.executable, "-m", "dvc", *args], cwd=cwd, env=env).returncode != 0:
        raise UserError(f"`dvc {' '.join(args)}` failed (see its output above)")


# The parameter file DVC experiments start from; `--params` names another whole file whose values they run with.
WORKSPACE_PARAMS = "params.yaml"
PARAMS_HELP = "The settings, a whole parameter file (e.g. configs/benchmark_synthetic.yaml): each experiment " \
              "runs with its values (as -S overrides of params.yaml, which is left as it is)."


SEEDS_HELP = "Comma-separated seeds, one experiment each; a seed sets the training and sampling seeds, the split " \
             "and (embedded dataset) the images."


RECORD_HELP = "The grid's record of finished experiments, to commit: seeds run in other sessions or clones " \
              "combine through it."


def _grid(params: Path) -> tuple[Params, str, list[str]]:
    """The parameter file (checked whole), its grid key and its self-training rounds."""
    from pipeline_lib.ablation import grid_key
    from pipeline_lib.check import check_params

    loaded = Params.load(params)
    rounds = check_params(loaded)[1:]  # (it refuses a file without self-training rounds)
    return loaded, grid_key(loaded), rounds


JOBS_HELP = "Experiments run at once (DVC queue workers). More than 1 pays on a GPU, which one small experiment " \
            "leaves mostly idle; on a CPU they mostly share its cores (2 cores: 1.14x with 2, README)."


def _overrides(workspace: Params, settings: Params, own: list[str]) -> list[str]:
    """``-S`` arguments of one experiment: what turns the workspace's params.yaml into the settings file (none when
    it is params.yaml), then the experiment's ``own`` (a variant's, a seed's, a budget's), which set their keys."""
    from pipeline_lib.ablation import settings_overrides

    keys = tuple(arg.split("=", 1)[0].lstrip("+~") for arg in own[1::2])
    return [*settings_overrides(workspace, settings, skip=keys), *own]


def _unqueued(variants: str, seeds: str, params: Path) -> dict[int, list[tuple[str, list[str]]]]:
    """Per seed, the name and ``-S`` overrides of each of the grid's experiments that does not exist yet (those
    that do are named and skipped: the key changes with any parameter but the variant's and the seed's)."""
    from pipeline_lib.ablation import COMMITS_SEARCHED, parse_seeds, parse_variants
    from pipeline_lib.comparison import experiment_names
    from pipeline_lib.settings import DataSettings

    variant_list, seed_list = parse_variants(variants), parse_seeds(seeds)
    loaded, grid, _ = _grid(params)
    dataset = DataSettings.from_params(loaded).dataset
    existing = set(experiment_names(COMMITS_SEARCHED))
    workspace = Params.load(WORKSPACE_PARAMS)
    pending: dict[int, list[tuple[str, list[str]]]] = {}
    for seed in seed_list:
        for variant in variant_list:
            name = variant.experiment_name(seed, grid)
            if name in existing:
                typer.echo(f"{name}: exists, skipped (remove it with `dvc exp remove {name}` to rerun)")
            else:
                overrides = _overrides(workspace, loaded, variant.overrides(seed, dataset))
                pending.setdefault(seed, []).append((name, overrides))
    return pending


def queue(variants: str = typer.Option(",".join(PAPER_VARIANTS), help=VARIANTS_HELP),
          seeds: str = typer.Option("0", help=SEEDS_HELP),
          params: Path = typer.Option(Path(WORKSPACE_PARAMS), help=PARAMS_HELP),
          ) -> None:
    """Queue one DVC experiment per variant and seed, named <variant>-s<seed>-<grid key>; names that already
    exist are skipped (the key changes with any parameter but the variant's and the seed's)."""
    for experiments in _unqueued(variants, seeds, params).values():
        for name, overrides in experiments:
            _dvc("exp", "run", "--queue", "-n", name, *overrides)


def run(variants: str = typer.Option(",".join(PAPER_VARIANTS), help=VARIANTS_HELP),
        seeds: str = typer.Option("0", help=SEEDS_HELP),
        jobs: int = typer.Option(1, min=1, help=JOBS_HELP),
        out: Path = typer.Option(Path("reports/ablation.md"), help="Where to write the markdown table."),
        record: Path = typer.Option(Path("outputs/ablation_runs.json"), help=RECORD_HELP),
        figures: Path = typer.Option(Path("outputs"), help="Folder of the figures (see `dars ablation figure`)."),
        params: Path = typer.Option(Path(WORKSPACE_PARAMS), help=PARAMS_HELP),
        ) -> None:
    """Queue the grid and run it, ``--jobs`` experiments at a time: one experiment per seed first, so that the
    stages a seed's variants share are computed once and restored from DVC's run cache by the others; then
    record the finished experiments, print and save the table of every recorded seed of this grid and draw its
    figures."""
    from pipeline_lib.ablation import batches_sharing_round0

    for batch in batches_sharing_round0(_unqueued(variants, seeds, params)):
        for name, overrides in batch:
            _dvc("exp", "run", "--queue", "-n", name, *overrides)
        _dvc("exp", "run", "--run-all", "-j", str(min(jobs, len(batch))))
    table(variants, "", out, record, params)
    figure(variants, "", figures, record, params)


def _recorded_grid(variants: str, seeds: str, record: Path, params: Path) -> tuple[list, list[dict], list[str]]:
    """Bring the record up to date with this grid's finished experiments (each copied once, rows already there
    kept), and return the variants, this grid's rows (of ``seeds``, or all recorded) and the rounds."""
    from pipeline_lib.ablation import COMMITS_SEARCHED, parse_experiment_name, parse_seeds, parse_variants
    from pipeline_lib.ablation_record import grid_rows, merge_rows, read_record, record_json, record_row
    from pipeline_lib.atomic import write_text
    from pipeline_lib.comparison import experiment_names, read_runs
    from pipeline_lib.settings import BASELINE_ROUND

    variant_list = parse_variants(variants)
    _, grid, rounds = _grid(params)
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
        typer.echo(f"recorded {', '.join(row['experiment'] for row in added)} in {record}")
    seed_list = parse_seeds(seeds) if seeds.strip() else None
    return variant_list, grid_rows(rows, grid, variant_list, seed_list), rounds


def table(variants: str = typer.Option(",".join(PAPER_VARIANTS), help=VARIANTS_HELP),
          seeds: str = typer.Option("", help="Comma-separated seeds to show (default: every recorded seed)."),
          out: Path = typer.Option(Path("reports/ablation.md"), help="Where to write the markdown table."),
          record: Path = typer.Option(Path("outputs/ablation_runs.json"), help=RECORD_HELP),
          params: Path = typer.Option(Path(WORKSPACE_PARAMS), help=PARAMS_HELP),
          ) -> None:
    """Record this grid's finished experiments, then print per-class IoU, tail mIoU, mIoU and the gain over the
    baseline, mean ± std over the recorded seeds."""
    from pipeline_lib.ablation_record import ablation_table, recorded_seeds
    from pipeline_lib.atomic import write_text

    variant_list, rows, rounds = _recorded_grid(variants, seeds, record, params)
    text = ablation_table(rows, variant_list, recorded_seeds(rows), rounds)
    typer.echo(text)
    write_text(out, text)
    typer.echo(f"wrote {out}")


def figure(variants: str = typer.Option(",".join(PAPER_VARIANTS), help=VARIANTS_HELP),
           seeds: str = typer.Option("", help="Comma-separated seeds to draw (default: every recorded seed)."),
           out: Path = typer.Option(Path("outputs"), help="Folder of the two PNGs, ablation_scores.png and "
                                    "ablation_class_shares.png."),
           record: Path = typer.Option(Path("outputs/ablation_runs.json"), help=RECORD_HELP),
           params: Path = typer.Option(Path(WORKSPACE_PARAMS), help=PARAMS_HELP),
           ) -> None:
    """Record this grid's finished experiments, then draw mIoU and tail mIoU per method (mean, seeds, ± std)
    and the labelled vs pseudo-label class shares of the first round per method (the paper's Figure 1)."""
    from pipeline_lib.ablation_figure import plot_class_shares, plot_scores

    variant_list, rows, rounds = _recorded_grid(variants, seeds, record, params)
    plot_scores(out / "ablation_scores.png", rows, variant_list, rounds)
    plot_class_shares(out / "ablation_class_shares.png", rows, variant_list, rounds[0])
    typer.echo(f"wrote {out / 'ablation_scores.png'} and {out / 'ablation_class_shares.png'}")


def curve(iterations: str = typer.Option("1000,2000,4000,8000",
                                         help="Comma-separated round-0 budgets, one experiment each."),
          seeds: str = typer.Option("0", help=SEEDS_HELP),
          jobs: int = typer.Option(1, min=1, help=JOBS_HELP),
          out: Path = typer.Option(Path("outputs/round0_curve.csv"), help="The curve's CSV, to commit (a DVC "
                                   "plot: `dvc plots show outputs/round0_curve.csv`)."),
          figure: Path = typer.Option(Path("outputs/round0_curve.png"), "--figure",
                                      help="The curve drawn from the whole CSV (every recipe and seed in it)."),
          params: Path = typer.Option(Path(WORKSPACE_PARAMS), help=PARAMS_HELP),
          ) -> None:
    """Round 0's val mIoU against its training budget: one DVC experiment per budget and seed (only prepare,
    train_r0 and evaluate_r0 run), each a whole poly schedule of that length, queued and run ``--jobs`` at a time
    (the workspace is left as it is). Rows already in the CSV are kept and not rerun, and the CSV is rewritten
    after each batch, so a curve longer than a working session resumes from the committed file. A row names its
    recipe (a hash of every parameter round 0 reads but its budget and seeds): change a round-0 parameter in
    params.yaml and the curve of that recipe is measured beside the others, never mixed with them; what each
    recipe sets is kept beside the CSV (``<name>.recipes.json``), and the figure names a recipe by the keys
    that set it apart from the others drawn ("train.base_lr=0.2"). Then it draws the CSV and says, per seed,
    whether this recipe's last measured doubling gained less than half a point."""
    from pipeline_lib.ablation import (
        COMMITS_SEARCHED,
        curve_csv,
        curve_experiment_name,
        curve_overrides,
        curve_recipes_json,
        curve_recipes_path,
        curve_row,
        parse_iterations,
        parse_seeds,
        plateau_verdict,
        read_curve,
        read_curve_recipes,
        recipe_key,
        recipe_labels,
        recipe_settings,
    )
    from pipeline_lib.ablation_figure import plot_round0_curve
    from pipeline_lib.atomic import write_text
    from pipeline_lib.check import check_params
    from pipeline_lib.comparison import experiment_names, read_runs
    from pipeline_lib.settings import BASELINE_ROUND, DataSettings

    budgets, seed_list = parse_iterations(iterations), parse_seeds(seeds)
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
    for seed in seed_list:
        for budget in budgets:
            if (recipe, budget, seed) in done:
                typer.echo(f"recipe {recipe}, {budget} iterations, seed {seed}: in {out}, kept")
            else:
                points.append((budget, seed, curve_experiment_name(budget, seed, recipe)))
    # `jobs` points at a time, and the CSV rewritten after each batch: a curve resumes from its last batch.
    for start in range(0, len(points), jobs):
        batch = points[start:start + jobs]
        queued = [(budget, seed, name) for budget, seed, name in batch if name not in existing]
        for budget, seed, name in queued:
            overrides = _overrides(workspace, loaded, curve_overrides(budget, seed, dataset))
            _dvc("exp", "run", "--queue", "-n", name, *overrides, "evaluate_r0")
        if queued:
            _dvc("exp", "run", "--run-all", "-j", str(len(queued)))
        for budget, seed, name in batch:
            [finished] = read_runs([name], [BASELINE_ROUND])
            rows.append(curve_row(recipe, budget, seed, name, finished.evaluation[BASELINE_ROUND]))
            write_text(out, curve_csv(rows))
            typer.echo(f"recipe {recipe}, {budget} iterations, seed {seed}: mIoU "
                       f"{100 * float(rows[-1]['miou']):.1f} → {out}")
    drawn = {row["recipe"] for row in rows}
    plot_round0_curve(figure, rows, recipe_labels({key: recipes[key] for key in drawn if key in recipes}))
    typer.echo(f"wrote {figure}")
    for seed in seed_list:
        typer.echo(plateau_verdict(rows, recipe, seed))


CLONE_HELP = "The clone to train in: made (a git clone of this repository's commit, sharing its DVC cache) " \
             "if it does not exist; the same command on it again resumes an interrupted training."


def _git(*args: str, cwd: Path | None = None) -> str:
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no message"])[-1]
        raise UserError(f"`git {' '.join(args)}` failed: {last}")
    return result.stdout


def _cache_dir(cwd: Path | None = None) -> Path | None:
    """The DVC cache of the project at ``cwd`` (None if it is not one)."""
    result = subprocess.run([sys.executable, "-m", "dvc", "cache", "dir"], cwd=cwd, capture_output=True, text=True)
    return Path(result.stdout.strip()).resolve() if result.returncode == 0 else None


def _same_tree(here: Path, there: Path) -> bool:
    """Whether a file or folder holds the same bytes in both places (compiled-bytecode caches aside)."""
    if here.is_file() or there.is_file():
        return here.is_file() and there.is_file() and here.read_bytes() == there.read_bytes()

    def files(root: Path) -> set[Path]:
        return {path.relative_to(root) for path in root.rglob("*")
                if path.is_file() and "__pycache__" not in path.parts}

    names = files(here)
    return names == files(there) and all((here / name).read_bytes() == (there / name).read_bytes() for name in names)


def round0(seed: int = typer.Option(..., help="The replicate: its training and sampling seeds, split and "
                                    "(embedded dataset) images, as `run --seeds`."),
           clone: Path = typer.Option(..., help=CLONE_HELP),
           iterations: int = typer.Option(None, min=1, help="Round 0's budget, for a point of the round-0 curve "
                                          "(`curve --iterations`); default: the parameter file's."),
           params: Path = typer.Option(Path(WORKSPACE_PARAMS), help="The settings, a whole parameter file: the "
                                       "clone's params.yaml becomes it, with the seed's (and budget's) values."),
           ) -> None:
    """Train one seed's round 0 ahead, in a clone of this repository that shares its DVC cache, so that
    `dars ablation run --seeds N` (or `curve --iterations B --seeds N`) here restores it from DVC's run cache
    instead of training it. A round 0 can outlast a working session, the grid's other stages not: this splits
    them. An interrupted training continues from the clone's .dars_resume/ when the same command runs again. It
    refuses what would train a round 0 that could not be restored here: uncommitted changes to the code round 0
    runs, or a clone whose code or settings differ."""
    import yaml

    from pipeline_lib.ablation import round0_code, seed_values, with_values
    from pipeline_lib.atomic import write_text
    from pipeline_lib.check import check_params
    from pipeline_lib.layout import RoundPaths
    from pipeline_lib.settings import BASELINE_ROUND, DataSettings

    loaded = Params.load(params)
    check_params(loaded)
    data = DataSettings.from_params(loaded)
    values = seed_values(seed, data.dataset) | ({"train.iterations": iterations} if iterations else {})
    wanted = yaml.safe_dump(with_values(loaded, values), sort_keys=False)
    root = Path(str(data.root))
    if not root.is_absolute() and not _git("ls-files", "--", str(root)).strip():
        raise UserError(f"{params}: data.root {str(root)!r} is not in git, so not in a clone of it; give it as an "
                        "absolute path")
    code = round0_code(yaml.safe_load(Path("dvc.yaml").read_text()))
    code += [] if root.is_absolute() else [str(root)]
    changed = _git("status", "--porcelain", "--untracked-files=no", "--", *code).splitlines()
    if changed:
        raise UserError(f"uncommitted changes to what round 0 runs ({', '.join(line[3:] for line in changed)}): "
                        "the clone would train the committed code, whose round 0 this workspace would not "
                        "restore; commit them first")
    cache = _cache_dir()
    if cache is None:
        raise UserError("no DVC project here: run `dars ablation round0` at the repository's root")
    if not clone.exists():
        _git("clone", "-q", ".", str(clone))
        _dvc("cache", "dir", "--local", str(cache), cwd=clone)
    elif not (clone / "dvc.yaml").is_file() or _cache_dir(clone) != cache:
        raise UserError(f"{clone}: not a clone made by this command (no dvc.yaml, or another DVC cache than "
                        f"{cache}); name another --clone")
    else:
        different = [path for path in code if not _same_tree(Path(path), clone / path)]
        if different:
            raise UserError(f"{clone}: other code than here ({', '.join(different)}), whose round 0 would not be "
                            "restored here; remove the clone (its training so far is lost) or name another")
        if (clone / "params.yaml").read_text() != wanted:
            raise UserError(f"{clone}: trains another round 0 (its params.yaml is not {params} with seed {seed}"
                            f"{f' and {iterations} iterations' if iterations else ''}); name another --clone")
    write_text(clone / "params.yaml", wanted)
    _dvc("repro", ROUND0_STAGES[-1], cwd=clone)
    scores = json.loads(RoundPaths.of(clone / "outputs", BASELINE_ROUND).metrics.read_text())
    budget = f" --iterations {iterations}" if iterations else ""
    again = f"curve{budget}" if iterations else "run"
    typer.echo(f"round 0 of seed {seed}: mIoU {100 * scores['miou']:.1f} / tail {100 * scores['tail_miou']:.1f}"
               f" (in {clone}); here, `dars ablation {again} --params {params} --seeds {seed}` restores it from "
               "DVC's run cache")


for _name, _command in (("queue", queue), ("run", run), ("table", table), ("figure", figure), ("curve", curve),
                       ("round0", round0)):
    app.command(_name)(reports_user_errors(_command))
