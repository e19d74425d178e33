"""train: round 0 trains on the labelled split; round k ≥ 1 on labelled + round k's pseudo labels."""

from __future__ import annotations

from pathlib import Path

import typer

from stages import OUTPUTS, PREPARED, own_arguments, run_standalone


def train(
    round_name: str = typer.Option("r0", "--round", help="r0 = supervised baseline; r1, r2… = rounds "
                                   "from params.yaml's `rounds`."),
    params: Path = typer.Option(Path("params.yaml"), help="Parameter file (reads seed, model.*, train.*, "
                                "distributed.*, and for rounds ≥ 1 rounds.<round>.* and self_training.*)."),
    prepared: Path = PREPARED,
    outputs: Path = OUTPUTS,
    resume_dir: Path = typer.Option(Path(".dars_resume"), help="Where interrupted runs keep their resume state."),
) -> None:
    """Train the round's model and write outputs/<round>/model.pt and its training log.

    An interrupted run resumes from its last checkpoint when rerun with the same inputs and settings.
    With distributed.processes N > 1 it runs as N processes under torchrun (one per GPU, DDP).
    """
    arguments = dict(locals())  # the options as given, for a relaunch under torchrun
    from pipeline_lib.params import Params
    from pipeline_lib.settings import BASELINE_ROUND, DistributedSettings, ModelSettings, TrainSettings, round_schedule

    p = Params.load(params)
    settings, model = TrainSettings.from_params(p, round_name), ModelSettings.from_params(p)
    schedule = None if round_name == BASELINE_ROUND else round_schedule(p)[round_name]
    distributed = DistributedSettings.from_params(p)
    settings.check_processes(distributed.processes)
    from pipeline_lib.device import uses_gpu

    distributed.check_sync_batchnorm(uses_gpu())

    from pipeline_lib.distributed import run_in_processes
    from pipeline_lib.train.round import train_round

    def work(run) -> str:
        settings.check_processes(run.world_size)  # torchrun may have been started by hand with its own count
        distributed.check_sync_batchnorm(run.device.type == "cuda", run.world_size)
        saved = train_round(run, round_name, settings, model, schedule, distributed.sync_batchnorm, prepared,
                            outputs, resume_dir, report=typer.echo)
        return f"wrote {saved}"

    run_in_processes(distributed.processes, own_arguments("train", train, arguments), work, typer.echo)


if __name__ == "__main__":
    run_standalone(train)
