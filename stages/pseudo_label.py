"""pseudo-label: the thresholds of the method and α from the confidence histogram, the pseudo labels drawn from
the confidence maps."""

from __future__ import annotations

from pathlib import Path

import typer

from stages import OUTPUTS, PREPARED, own_arguments, run_standalone


def pseudo_label(
    round_name: str = typer.Option(..., "--round", help="The round (r1, r2…) whose pseudo labels to make."),
    params: Path = typer.Option(Path("params.yaml"), help="Parameter file (reads pseudo_label.method and .seed, "
                                "rounds.<round>.labeling_ratio and .teacher, distributed.processes)."),
    prepared: Path = PREPARED,
    outputs: Path = OUTPUTS,
) -> None:
    """Write outputs/<round>/pseudo_labels.zarr, pseudo_label_stats.json, pseudo_label_metrics.json and
    class_distribution.csv from outputs/<round>/confidences.zarr.

    With distributed.processes N > 1 it runs as N processes under torchrun, each drawing whole shards; the
    outputs are the same whatever N.
    """
    arguments = dict(locals())  # the options as given, for a relaunch under torchrun
    from pipeline_lib.params import Params
    from pipeline_lib.settings import PseudoLabelSettings, distributed_processes, round_teacher

    p = Params.load(params)
    settings, teacher = PseudoLabelSettings.from_params(p, round_name), round_teacher(p, round_name)

    from pipeline_lib.distributed import run_in_processes
    from pipeline_lib.pseudo_label.round import pseudo_label_round

    def work(run) -> str:
        stats = pseudo_label_round(round_name, teacher, settings, prepared, outputs, writers=run)
        return (f"{round_name}: {settings.method} labelled {stats['fraction_labeled']:.3f} of pixels, "
                f"KL(labelled‖pseudo) = {stats['kl_divergence']:.4f} → "
                f"{outputs / round_name / 'pseudo_labels.zarr'}")

    run_in_processes(distributed_processes(p), own_arguments("pseudo-label", pseudo_label, arguments), work,
                     typer.echo)


if __name__ == "__main__":
    run_standalone(pseudo_label)
