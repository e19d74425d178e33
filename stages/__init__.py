"""Thin stage entry points: each reads params.yaml, calls into pipeline_lib and writes its declared outputs.

``stages/cli.py`` assembles them into the ``dars`` command; each module also runs on its own
(``python -m stages.train --help``).
"""

from __future__ import annotations

import functools
import sys

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


def run_standalone(command) -> None:
    typer.run(reports_user_errors(command))
