"""ablation: the paper's Table 4 grid (ST, CBST, DA, DARS, ±TS) as queued DVC experiments, and its table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import typer

from pipeline_lib.ablation import CONTROL, PAPER_VARIANTS, Variant, format_table, metric_columns
from pipeline_lib.atomic import write_text
from pipeline_lib.config import BASELINE_ROUND, RoundPaths, round_schedule
from pipeline_lib.data.prepared import load_spec
from pipeline_lib.errors import UserError
from pipeline_lib.params import Params

from . import reports_user_errors

app = typer.Typer(help="Run the paper's ablation grid as DVC experiments and print a Table-4-style comparison.",
                  no_args_is_help=True)

VARIANTS_HELP = f"Comma-separated variants: method[+ts] with method in st, cbst, da, dars, or {CONTROL} (the " \
                f"rounds' iterations on labelled images only). Default: the paper's Table 4 rows " \
                f"{','.join(PAPER_VARIANTS)}."


def _variants(text: str) -> list[Variant]:
    return [Variant.parse(v) for v in text.split(",") if v.strip()]


def _seeds(text: str) -> list[int]:
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise UserError(f"--seeds must be comma-separated integers, got {text!r}") from None


# Experiments hang off the commit they were queued from; look a few commits back so that committing
# (say, the README) after queueing does not hide them.
COMMITS_SEARCHED = 20


def _experiment_records() -> dict[str, dict]:
    import dvc.api

    return {r["Experiment"]: r for r in dvc.api.exp_show(num=COMMITS_SEARCHED) if r.get("Experiment")}


def _existing_experiments() -> set[str]:
    return set(_experiment_records())


def _dvc(*args: str) -> None:
    typer.echo("$ dvc " + " ".join(args))
    if subprocess.run([sys.executable, "-m", "dvc", *args]).returncode != 0:
        raise UserError(f"`dvc {' '.join(args)}` failed (see its output above)")


def queue(variants: str = typer.Option(",".join(PAPER_VARIANTS), help=VARIANTS_HELP),
          seeds: str = typer.Option("0", help="Comma-separated seeds (training and sampling); one experiment each."),
          ) -> None:
    """Queue one DVC experiment per variant and seed (skipping names that already exist)."""
    existing = _existing_experiments()
    for seed in _seeds(seeds):
        for variant in _variants(variants):
            name = variant.experiment_name(seed)
            if name in existing:
                typer.echo(f"{name}: exists, skipped (remove it with `dvc exp remove {name}` to rerun)")
                continue
            _dvc("exp", "run", "--queue", "-n", name, *variant.overrides(seed))


def run(variants: str = typer.Option(",".join(PAPER_VARIANTS), help=VARIANTS_HELP),
        seeds: str = typer.Option("0", help="Comma-separated seeds."),
        out: Path = typer.Option(Path("reports/ablation.md"), help="Where to write the markdown table."),
        ) -> None:
    """Queue the grid, run the queue (one job at a time), then print and save the table."""
    queue(variants, seeds)
    _dvc("exp", "run", "--run-all", "-j", "1")
    table(variants, seeds, out, Path("params.yaml"), Path("data/prepared"))


def table(variants: str = typer.Option(",".join(PAPER_VARIANTS), help=VARIANTS_HELP),
          seeds: str = typer.Option("0", help="Comma-separated seeds."),
          out: Path = typer.Option(Path("reports/ablation.md"), help="Where to write the markdown table."),
          params: Path = typer.Option(Path("params.yaml"), help="Parameter file (for the round schedule)."),
          prepared: Path = typer.Option(Path("data/prepared"), help="Prepared dataset (for class names)."),
          ) -> None:
    """Print per-class IoU, tail mIoU, mIoU and gain over the baseline for each finished experiment."""
    rounds = list(round_schedule(Params.load(params)))
    if not rounds:
        raise UserError(f"{params}: no self-training rounds are defined under 'rounds'")
    class_names = list(load_spec(prepared).classes.names)
    records = _experiment_records()
    seed_list, variant_list = _seeds(seeds), _variants(variants)
    missing = [v.experiment_name(s) for v in variant_list for s in seed_list if v.experiment_name(s) not in records]
    if len(missing) == len(variant_list) * len(seed_list):
        raise UserError(f"no finished experiment of this grid; missing {', '.join(missing[:6])}… — run "
                        "`dars ablation run` (or `dars ablation queue` then `dvc exp run --run-all`)")

    def metrics_of(variant: Variant, round_name: str) -> list[dict]:
        file = RoundPaths.of(Path("outputs"), round_name).metrics.as_posix()
        return [metric_columns(records[name], file) for s in seed_list
                if (name := variant.experiment_name(s)) in records]

    baseline = [m for s in seed_list for v in variant_list if (name := v.experiment_name(s)) in records
                for m in [metric_columns(records[name], RoundPaths.of(Path("outputs"), BASELINE_ROUND)
                                         .metrics.as_posix())]][:len(seed_list)]
    sections = [(f"k = 1 (round {rounds[0]}), val mIoU ×100", rounds[0])]
    if len(rounds) > 1:
        sections.append((f"iterative training (round {rounds[-1]}), val mIoU ×100", rounds[-1]))
    text = "\n".join(format_table(title, [(v.label, metrics_of(v, r)) for v in variant_list], class_names, baseline)
                     for title, r in sections)
    if missing:
        text += f"\nNot finished: {', '.join(missing)}\n"
    typer.echo(text)
    write_text(out, text)
    typer.echo(f"wrote {out}")


for _name, _command in (("queue", queue), ("run", run), ("table", table)):
    app.command(_name)(reports_user_errors(_command))
