"""ablation: the paper's Table 4 grid (ST, CBST, DA, DARS, ±TS) as queued DVC experiments, its committed record,
table and figures, and the round-0 curve (pipeline_lib/experiments)."""

from __future__ import annotations

from pathlib import Path

import typer

from pipeline_lib.experiments.grid import (
    CONTROL,
    DEFAULT_VARIANTS,
    WORKSPACE_PARAMS,
    parse_seeds,
    parse_variants,
)
from stages import reports_user_errors

app = typer.Typer(help="Run the paper's ablation grid as DVC experiments and print a Table-4-style comparison.",
                  no_args_is_help=True, rich_markup_mode=None)

VARIANTS = typer.Option(",".join(DEFAULT_VARIANTS), help=f"Comma-separated variants: method[+ts] with method in st, "
                        f"cbst, da, dars, or {CONTROL} (the rounds' iterations on labelled images only). Default: "
                        f"the paper's Table 4 rows and the control.")
SEEDS = typer.Option("0", help="Comma-separated seeds, one experiment each; a seed sets the training and sampling "
                     "seeds, the split and (embedded dataset) the images.")
PARAMS = typer.Option(Path(WORKSPACE_PARAMS), help="The settings, a whole parameter file (e.g. "
                      "configs/benchmark_synthetic.yaml): each experiment runs with its values (as -S overrides of "
                      "params.yaml, which is left as it is).")
JOBS = typer.Option(1, min=1, help="Experiments run at once (DVC queue workers). More than 1 pays on a GPU, which "
                    "one small experiment leaves mostly idle; on a CPU they mostly share its cores (2 cores: 1.14x "
                    "with 2, README).")
RECORD = typer.Option(Path("outputs/ablation_runs.json"), help="The grid's record of finished experiments, to "
                      "commit: seeds run in other sessions or clones combine through it.")
TABLE = typer.Option(Path("reports/ablation.md"), help="Where to write the markdown table.")
FIGURES = typer.Option(Path("outputs"), help="Folder of the two PNGs, ablation_scores.png and "
                       "ablation_class_shares.png.")


def _seeds_or_all(seeds: str) -> list[int] | None:
    return parse_seeds(seeds) if seeds.strip() else None


def queue(variants: str = VARIANTS, seeds: str = SEEDS, params: Path = PARAMS) -> None:
    """Queue one DVC experiment per variant and seed, named <variant>-s<seed>-<grid key>; names that already
    exist are skipped (the key changes with any parameter but the variant's and the seed's)."""
    from pipeline_lib.experiments.grid import queue_grid

    queue_grid(parse_variants(variants), parse_seeds(seeds), params, report=typer.echo)


def run(variants: str = VARIANTS, seeds: str = SEEDS, jobs: int = JOBS, out: Path = TABLE, record: Path = RECORD,
        figures: Path = typer.Option(Path("outputs"), help="Folder of the figures (see `dars ablation figure`)."),
        params: Path = PARAMS) -> None:
    """Queue the grid and run it, ``--jobs`` experiments at a time: one experiment per seed first, so that the
    stages a seed's variants share are computed once and restored from DVC's run cache by the others; then
    record the finished experiments, print and save the table of every recorded seed of this grid and draw its
    figures."""
    from pipeline_lib.experiments.grid import run_grid

    run_grid(parse_variants(variants), parse_seeds(seeds), jobs, params, report=typer.echo)
    table(variants, "", out, record, params)
    figure(variants, "", figures, record, params)


def table(variants: str = VARIANTS,
          seeds: str = typer.Option("", help="Comma-separated seeds to show (default: every recorded seed)."),
          out: Path = TABLE, record: Path = RECORD, params: Path = PARAMS) -> None:
    """Record this grid's finished experiments, then print per-class IoU, tail mIoU, mIoU and the gain over the
    baseline, mean ± std over the recorded seeds."""
    from pipeline_lib.atomic import write_text
    from pipeline_lib.experiments.record import ablation_table, record_grid, recorded_seeds

    variant_list = parse_variants(variants)
    rows, rounds = record_grid(variant_list, _seeds_or_all(seeds), record, params, report=typer.echo)
    text = ablation_table(rows, variant_list, recorded_seeds(rows), rounds)
    typer.echo(text)
    write_text(out, text)
    typer.echo(f"wrote {out}")


def figure(variants: str = VARIANTS,
           seeds: str = typer.Option("", help="Comma-separated seeds to draw (default: every recorded seed)."),
           out: Path = FIGURES, record: Path = RECORD, params: Path = PARAMS) -> None:
    """Record this grid's finished experiments, then draw mIoU and tail mIoU per method (mean, seeds, ± std)
    and the labelled vs pseudo-label class shares of the first round per method (the paper's Figure 1)."""
    from pipeline_lib.experiments.figures import plot_grid
    from pipeline_lib.experiments.record import record_grid

    variant_list = parse_variants(variants)
    rows, rounds = record_grid(variant_list, _seeds_or_all(seeds), record, params, report=typer.echo)
    written = plot_grid(out, rows, variant_list, rounds)
    typer.echo(f"wrote {' and '.join(map(str, written))}")


def curve(iterations: str = typer.Option("1000,2000,4000,8000",
                                         help="Comma-separated round-0 budgets, one experiment each."),
          seeds: str = SEEDS, jobs: int = JOBS,
          out: Path = typer.Option(Path("outputs/round0_curve.csv"), help="The curve's CSV, to commit (a DVC "
                                   "plot: `dvc plots show outputs/round0_curve.csv`)."),
          figure: Path = typer.Option(Path("outputs/round0_curve.png"), "--figure",
                                      help="The curve drawn from the whole CSV (every recipe and seed in it)."),
          params: Path = PARAMS) -> None:
    """Round 0's val mIoU against its training budget: one DVC experiment per budget and seed (only prepare,
    train_r0 and evaluate_r0 run), each a whole poly schedule of that length, queued and run ``--jobs`` at a time
    (the workspace is left as it is). Rows already in the CSV are kept and not rerun, and the CSV is rewritten
    after each batch, so a curve longer than a working session resumes from the committed file. A row names its
    recipe (a hash of every parameter round 0 reads but its budget and seeds): change a round-0 parameter in
    params.yaml and the curve of that recipe is measured beside the others, never mixed with them; what each
    recipe sets is kept beside the CSV (``<name>.recipes.json``), and the figure names a recipe by the keys
    that set it apart from the others drawn ("train.base_lr=0.2"). Then it draws the CSV and says, per seed,
    whether this recipe's last measured doubling gained less than half a point."""
    from pipeline_lib.experiments.curve import parse_iterations
    from pipeline_lib.experiments.curve_run import measure_curve

    measure_curve(parse_iterations(iterations), parse_seeds(seeds), jobs, out, figure, params, report=typer.echo)


def round0(seed: int = typer.Option(..., help="The replicate: its training and sampling seeds, split and "
                                    "(embedded dataset) images, as `run --seeds`."),
           clone: Path = typer.Option(..., help="The clone to train in: made (a git clone of this repository's "
                                      "commit, sharing its DVC cache) if it does not exist; the same command on "
                                      "it again resumes an interrupted training."),
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
    from pipeline_lib.experiments.round0 import train_round0_in_clone

    scores = train_round0_in_clone(seed, clone, iterations, params, report=typer.echo)
    again = f"curve --iterations {iterations}" if iterations else "run"
    typer.echo(f"round 0 of seed {seed}: mIoU {100 * scores['miou']:.1f} / tail {100 * scores['tail_miou']:.1f}"
               f" (in {clone}); here, `dars ablation {again} --params {params} --seeds {seed}` restores it from "
               "DVC's run cache")


for _name, _command in (("queue", queue), ("run", run), ("table", table), ("figure", figure), ("curve", curve),
                       ("round0", round0)):
    app.command(_name)(reports_user_errors(_command))
