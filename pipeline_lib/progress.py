"""One progress display for every long loop: a tqdm bar in a terminal, a few plain lines in DVC's logs.

tqdm redraws its bar with carriage returns; written to a file (``dvc repro`` captures stage output) that is
one ever-growing line per loop. When stderr is not a terminal, progress is a line at every tenth of the way
and at the end, each with the postfix values (e.g. the training loss). ``TQDM_DISABLE=1`` silences both.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

STEPS = 10  # lines per loop in a log


class _LogLines:
    """The non-terminal display: ``desc: n/total unit (p %) key=value`` lines on stderr."""

    def __init__(self, iterable: Iterable[T] | None, total: int | None, desc: str, unit: str) -> None:
        self.iterable, self.total, self.desc, self.unit = iterable, total, desc, unit
        self.count, self.postfix, self.started, self.written = 0, "", time.perf_counter(), 0
        self._next_line = self._step()

    def _step(self) -> int:
        if not self.total:
            return self.count + 1_000_000_000  # unknown length: the final line only
        return (self.count * STEPS // self.total + 1) * self.total // STEPS or 1

    def _write(self) -> None:
        share = f" ({100 * self.count / self.total:.0f} %)" if self.total else ""
        rate = self.count / max(time.perf_counter() - self.started, 1e-9)
        postfix = f", {self.postfix}" if self.postfix else ""
        self.written = self.count
        print(f"{self.desc}: {self.count}/{self.total or '?'} {self.unit}{share}, {rate:.2f} {self.unit}/s{postfix}",
              file=sys.stderr, flush=True)

    def update(self, count: int = 1) -> None:
        self.count += count
        if self.count >= self._next_line:
            self._write()
            self._next_line = self._step()

    def set_postfix(self, **values: Any) -> None:
        self.postfix = ", ".join(f"{key}={value}" for key, value in values.items())

    def close(self) -> None:
        if self.count != self.written:
            self._write()

    def __iter__(self) -> Iterator[T]:
        for item in self.iterable:
            yield item
            self.update()
        self.close()

    def __enter__(self) -> _LogLines:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class _Silent(_LogLines):
    def _write(self) -> None:
        pass


def track(iterable: Iterable[T] | None = None, total: int | None = None, desc: str = "", unit: str = "it",
             enabled: bool = True):
    """``iterable`` wrapped in the progress display (or a bare counter with ``update`` when it is None)."""
    if total is None and iterable is not None and hasattr(iterable, "__len__"):
        total = len(iterable)
    if not enabled or os.environ.get("TQDM_DISABLE", "").lower() in ("1", "true", "yes"):
        return _Silent(iterable, total, desc, unit)
    if sys.stderr.isatty():
        from tqdm import tqdm

        return tqdm(iterable, total=total, desc=desc, unit=unit, leave=False, dynamic_ncols=True)
    return _LogLines(iterable, total, desc, unit)
