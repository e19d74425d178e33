"""Reading ``params.yaml``: plain dicts, with checks that name the key and the bad value."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
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

    @classmethod
    def load(cls, path: str | os.PathLike = "params.yaml") -> "Params":
        path = Path(path)
        if not path.is_file():
            raise UserError(f"{path}: parameter file not found")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise UserError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
        return cls(data, str(path))

    def raw(self, key: str, default: Any = _MISSING) -> Any:
        node: Any = self.data
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                if default is _MISSING:
                    raise UserError(f"{self.source}: missing key '{key}'")
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

    def section(self, key: str) -> dict:
        value = self.raw(key)
        if not isinstance(value, dict):
            raise UserError(f"{self.source}: '{key}' must be a mapping, got {value!r}")
        return value


def positive(value: float) -> str | None:
    return None if value > 0 else "must be > 0"


def non_negative(value: float) -> str | None:
    return None if value >= 0 else "must be >= 0"


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
