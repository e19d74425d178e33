"""ablation: the paper's Table 4 grid (ST, CBST, DA, DARS, ±TS) as queued DVC experiments, and its table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import typer

from pipeline_lib.ablation import CONTROL, PAPER_VARIANTS
from pipeline_lib.errors import UserError
from stages import reports_user_errors

app = typer.Typer(help="Run the paper's ablation grid as DVC experiments and print a Table-4-style comparison.",
                  no_args_is_help=True, rich_markup_mode=None)

VARIANTS_HELP = f"Comma-separated variants: method[+ts] with method in st, cbst, da, dars, or {CONTROL} (the " \
                f"rounds' iterations on labelled images only). Default: the paper's Table 4 rows " \
                f"{','.join(PAPER_VARIANTS)}."


def _dvc(*args: str) -> None:
    typer.echo("$ dvc " + " ".join(args))
    if subprocess.run([sys.executable, "-m", "dvc", *args]).returncode != 0:
        raise UserError(f"`dvc {' '.join(args)}` failed (see its output above)")


SEEDS_HELP = "Comma-separated seeds, one experiment each; a seed sets the training and sampling seeds, the split " \
             "and (embedded dataset) the images."


def queue(variants: str = typer.Option(",".join(PAPER_VARIANTS), help=VARIANTS_HELP),
          seeds: str = typer.Option("0", help=SEEDS_HELP),
          params: Path = typer.Option(Path("params.yaml"), help="Parameter file (for data.dataset)."),
          ) -> None:
    """Queue one DVC experiment per variant and seed (skipping names that already exist)."""
    from pipeline_lib.ablation import COMMITS_SEARCHED, parse_seeds, parse_variants
    from pipeline_lib.comparison import experiment_names
    from pipeline_lib.settings import DataSettings, Params

    variant_list, seed_list = parse_variants(variants), parse_seeds(seeds)
    dataset = DataSettings.from_params(Params.load(params)).dataset
    existing = set(experiment_names(COMMITS_SEARCHED))
    for seed in seed_list:
        for variant in variant_list:
            name = variant.experiment_name(seed)
            if name in existing:
                typer.echo(f"{name}: exists, skipped (remove it with `dvc exp remove {name}` to rerun)")
                continue
            _dvc("exp", "run", "--queue", "-n", name, *variant.overrides(seed, dataset))


def run(variants: str = typer.Option(",".join(PAPER_VARIANTS), help=VARIANTS_HELP),
        seeds: str = typer.Option("0", help=SEEDS_HELP),
        out: Path = typer.Option(Path("reports/ablation.md"), help="Where to write the markdown table."),
        params: Path = typer.Option(Path("params.yaml"), help="Parameter file (data.dataset, the round schedule)."),
        ) -> None:
    """Queue the grid, run the queue (one job at a time), then print and save the table."""
    queue(variants, seeds, params)
    _dvc("exp", "run", "--run-all", "-j", "1")
    table(variants, seeds, out, params, Path("data/prepared"))


def table(variants: str = typer.Option(",".join(PAPER_VARIANTS), help=VARIANTS_HELP),
          seeds: str = typer.Option("0", help=SEEDS_HELP),
          out: Path = typer.Option(Path("reports/ablation.md"), help="Where to write the markdown table."),
          params: Path = typer.Option(Path("params.yaml"), help="Parameter file (for the round schedule)."),
          prepared: Path = typer.Option(Path("data/prepared"), help="Prepared dataset (for class names)."),
          ) -> None:
    """Print per-class IoU, tail mIoU, mIoU and gain over the baseline for each finished experiment."""
    from pipeline_lib.ablation import COMMITS_SEARCHED, ablation_table, parse_seeds, parse_variants
    from pipeline_lib.atomic import write_text
    from pipeline_lib.comparison import experiment_names
    from pipeline_lib.data.prepared import load_spec
    from pipeline_lib.settings import Params, round_schedule

    rounds = list(round_schedule(Params.load(params)))
    if not rounds:
        raise UserError(f"{params}: no self-training rounds are defined under 'rounds'")
    text = ablation_table(set(experiment_names(COMMITS_SEARCHED)), parse_variants(variants), parse_seeds(seeds),
                          rounds, list(load_spec(prepared).classes.names))
    typer.echo(text)
    write_text(out, text)
    typer.echo(f"wrote {out}")


def curve(iterations: str = typer.Option("1000,2000,4000,8000",
                                         help="Comma-separated round-0 budgets, one experiment each."),
          seeds: str = typer.Option("0", help=SEEDS_HELP),
          out: Path = typer.Option(Path("outputs/round0_curve.csv"), help="The curve's CSV, to commit (a DVC "
                                   "plot: `dvc plots show outputs/round0_curve.csv`)."),
          params: Path = typer.Option(Path("params.yaml"), help="Parameter file (for data.dataset)."),
          ) -> None:
    """Round 0's val mIoU against its training budget: one DVC experiment per budget and seed (only prepare,
    train_r0 and evaluate_r0 run), each a whole poly schedule of that length, queued and run one at a time (the
    workspace is left as it is). Rows already in the CSV are kept and not rerun, and the CSV is rewritten after
    each budget, so a curve longer than a working session resumes from the committed file."""
    from pipeline_lib.ablation import (
        COMMITS_SEARCHED,
        curve_csv,
        curve_experiment_name,
        curve_overrides,
        curve_row,
        parse_iterations,
        parse_seeds,
        read_curve,
    )
    from pipeline_lib.atomic import write_text
    from pipeline_lib.comparison import experiment_names, read_runs
    from pipeline_lib.settings import BASELINE_ROUND, DataSettings, Params

    budgets, seed_list = parse_iterations(iterations), parse_seeds(seeds)
    dataset = DataSettings.from_params(Params.load(params)).dataset
    rows = read_curve(out)
    done = {(row["iterations"], row["seed"]) for row in rows}
    existing = set(experiment_names(COMMITS_SEARCHED))
    for seed in seed_list:
        for budget in budgets:
            if (budget, seed) in done:
                typer.echo(f"{budget} iterations, seed {seed}: in {out}, kept")
                continue
            name = curve_experiment_name(budget, seed)
            if name not in existing:
                _dvc("exp", "run", "--queue", "-n", name, *curve_overrides(budget, seed, dataset), "evaluate_r0")
                _dvc("exp", "run", "--run-all", "-j", "1")
            [finished] = read_runs([name], [BASELINE_ROUND])
            rows.append(curve_row(budget, seed, name, finished.evaluation[BASELINE_ROUND]))
            write_text(out, curve_csv(rows))
            typer.echo(f"{budget} iterations, seed {seed}: mIoU {100 * float(rows[-1]['miou']):.1f} → {out}")


for _name, _command in (("queue", queue), ("run", run), ("table", table), ("curve", curve)):
    app.command(_name)(reports_user_errors(_command))
