"""Reading a parameter file (``params.yaml`` or a config): one checked value at a time.

:meth:`Params.get` reads one key and refuses a bad value with one message form,
``<file>: '<key>' <problem>, got <value>``; the check functions below are its ``checks``. ``Params`` records
every key looked up, which tells what a stage reads (tests compare it with dvc.yaml) and what nothing reads
(``dars check``). The typed settings per section are in :mod:`pipeline_lib.settings`.

This module imports neither torch nor numpy: the ``dars`` command checks parameters before any of them load.
"""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from pipeline_lib.errors import UserError

_MISSING = object()


class Params:
    """A loaded ``params.yaml``; ``get("train.base_lr", float, positive)`` reads one checked value."""

    def __init__(self, data: dict, source: str = "params.yaml") -> None:
        if not isinstance(data, dict):
            raise UserError(f"{source}: expected a mapping at the top level")
        self.data = data
        self.source = source
        # Every dotted key looked up, outside `unrecorded` blocks: what a stage's settings read (tests compare it
        # with the stage's dvc.yaml params) and, after every reader ran, what no reader knows (`dars check`).
        self.read: set[str] = set()
        self._recording = True

    @classmethod
    def load(cls, path: str | os.PathLike = "params.yaml") -> Params:
        path = Path(path)
        if not path.is_file():
            raise UserError(f"{path}: parameter file not found")
        return cls.parse(path.read_text(), str(path))

    @classmethod
    def parse(cls, text: str, source: str) -> Params:
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise UserError(f"{source}{where}: not valid YAML ({problem})") from None
        return cls(data, source)

    def unread_keys(self) -> list[str]:
        """The dotted keys of the file (its leaves) that no lookup so far has read, in file order: after every
        reader has run (``dars check``), the keys nothing reads, such as a misspelt one."""
        def leaves(node: Any, prefix: str) -> Iterator[str]:
            if isinstance(node, dict) and node:
                for name, value in node.items():
                    yield from leaves(value, f"{prefix}.{name}" if prefix else str(name))
            else:
                yield prefix

        return [key for key in leaves(self.data, "")
                if not any(key == read or key.startswith(read + ".") for read in self.read)]

    @contextmanager
    def unrecorded(self) -> Iterator[None]:
        """Look-ups inside the block are not recorded: checks of keys that do not feed the caller's work (a round's
        teacher graph, validated whole by every stage that names a round)."""
        recording, self._recording = self._recording, False
        try:
            yield
        finally:
            self._recording = recording

    def note(self, key: str) -> None:
        """Record ``key`` as read: the part of an unrecorded check's result that the caller does use."""
        if self._recording:
            self.read.add(key)

    def raw(self, key: str, default: Any = _MISSING) -> Any:
        self.note(key)
        node: Any = self.data
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                if default is _MISSING:
                    near = difflib.get_close_matches(part, [str(k) for k in node], n=1) \
                        if isinstance(node, dict) else []
                    raise UserError(f"{self.source}: missing key '{key}'"
                                    + (f" ('{near[0]}' is there: misspelt?)" if near else ""))
                return default
            node = node[part]
        return node

    def get(self, key: str, kind: type, *checks: Callable[[Any], str | None], default: Any = _MISSING) -> Any:
        """Value at dotted ``key`` converted to ``kind``; each check returns an error phrase or None."""
        value = self.raw(key, default)
        if value is None and default is None:
            return None
        try:
            if kind is bool:
                if not isinstance(value, bool):
                    raise TypeError
                converted = value
            elif kind in (int, float) and isinstance(value, bool):
                raise TypeError
            elif kind is int and isinstance(value, float) and not value.is_integer():
                raise TypeError
            elif kind is str and not isinstance(value, str):
                raise TypeError
            else:
                converted = kind(value)
        except (TypeError, ValueError):
            raise UserError(f"{self.source}: '{key}' must be a {kind.__name__}, got {value!r}") from None
        if isinstance(converted, float) and not math.isfinite(converted):
            raise UserError(f"{self.source}: '{key}' must be finite, got {value!r}")
        for check in checks:
            problem = check(converted)
            if problem:
                raise UserError(f"{self.source}: '{key}' {problem}, got {value!r}")
        return converted

    def fail(self, key: str, problem: str) -> UserError:
        """The one message form for a value that passed its type but not a check across keys."""
        return UserError(f"{self.source}: '{key}' {problem}, got {self.raw(key, None)!r}")


def positive(value: float) -> str | None:
    return None if value > 0 else "must be > 0"


def non_negative(value: float) -> str | None:
    return None if value >= 0 else "must be >= 0"


def at_least(minimum: int) -> Callable[[float], str | None]:
    return lambda value: None if value >= minimum else f"must be >= {minimum}"


def fraction(value: float) -> str | None:
    """In (0, 1]."""
    return None if 0 < value <= 1 else "must be in (0, 1]"


def fraction_below_one(value: float) -> str | None:
    """In [0, 1)."""
    return None if 0 <= value < 1 else "must be in [0, 1)"


def open_fraction(value: float) -> str | None:
    """In (0, 1)."""
    return None if 0 < value < 1 else "must be in (0, 1)"


def one_of(*choices: str) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        return None if value in choices else f"must be one of {', '.join(choices)}"
    return check
