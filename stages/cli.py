"""The ``dars`` command: one sub-command per pipeline step (each is also a DVC stage)."""

from __future__ import annotations

import typer

from . import reports_user_errors
from .ablation import app as ablation_app
from .check import check
from .compare import compare
from .confidence import confidence
from .evaluate import evaluate
from .infer import infer
from .inspect import inspect
from .predict import predict
from .prepare import prepare
from .pseudo_label import pseudo_label
from .train import train

app = typer.Typer(
    name="dars",
    help="DARS semi-supervised segmentation as a DVC pipeline. `dvc repro` runs the stages below in order "
         "(prepare → train r0 → evaluate r0 → for each round: infer → confidence → pseudo-label → train → "
         "evaluate); run one by hand with the same arguments dvc.yaml gives it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: rendering it with rich costs more than the rest of the start-up
)

for name, command in (("check", check), ("prepare", prepare), ("train", train), ("evaluate", evaluate),
                      ("infer", infer), ("confidence", confidence),
                      ("pseudo-label", pseudo_label), ("inspect", inspect), ("compare", compare),
                      ("predict", predict)):
    app.command(name)(reports_user_errors(command))


app.add_typer(ablation_app, name="ablation")


@app.command("models")
def models() -> None:
    """List the model architectures model.arch accepts, each with what it is."""
    from pipeline_lib.models.build import ARCHITECTURES, DESCRIPTIONS

    width = max(map(len, ARCHITECTURES))
    for arch in ARCHITECTURES:
        typer.echo(f"{arch:<{width}}  {DESCRIPTIONS[arch]}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
