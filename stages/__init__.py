"""Thin stage entry points: each parses params.yaml into settings, makes one library call and prints one line.

``stages/cli.py`` assembles them into the ``dars`` command; each module also runs on its own
(``python -m stages.train --help``). The library (and torch with it) is imported inside each command, so
``dars --help``, every ``--help`` and a parameter error start in a fraction of a second.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from inspect import signature  # (not `import inspect`: the stages.inspect module would shadow it)

# OpenMP threads that spin while they wait make torch 10-20x slower as soon as another process wants a
# core (measured: a training step went from 0.2 s to 4.4 s on 2 cores). Must be set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import typer

from pipeline_lib.errors import UserError


def reports_user_errors(command):
    """Print a UserError as one ``error: ...`` line (no traceback) and exit with status 2."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except UserError as exc:
            message = str(exc)
            # Raised in a DataLoader worker, it comes back wrapped in the worker's traceback, whose last
            # line is "<module>.UserError: <message>".
            if "\nOriginal Traceback" in message:
                message = message.splitlines()[-1].split("UserError: ", 1)[-1]
            typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
            sys.exit(2)

    return wrapper


PREPARED = typer.Option(Path("data/prepared"), help="Prepared-dataset directory.")
OUTPUTS = typer.Option(Path("outputs"), help="Root of the per-round output directories.")


def run_standalone(command) -> None:
    typer.run(reports_user_errors(command))


def own_arguments(subcommand: str, command, values: dict) -> list[str]:
    """``<subcommand> --option value ...`` for every option that ``command`` declares, with its value from
    ``values`` (the command's ``locals()``), so that a relaunch (under torchrun) passes every option, including
    ones added later."""
    arguments = [subcommand]
    for name, parameter in signature(command).parameters.items():
        value = values[name]
        if value is None:
            continue
        declared = getattr(parameter.default, "param_decls", None) or ()
        flag = next((d for d in declared if d.startswith("--")), "--" + name.replace("_", "-"))
        arguments += [flag, str(value)]
    return arguments
