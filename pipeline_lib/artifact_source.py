"""A project's files in the workspace or at any git revision / DVC experiment, by repository-relative path.

An :class:`ArtifactSource` reads them from the working tree (``rev=None``) or, through ``dvc.api.DVCFileSystem``,
as they were at a git revision or DVC experiment (``rev="HEAD~1"``, a branch, a tag, a sha, an experiment name).
At a revision, git-tracked files come from git and DVC outputs from the local DVC cache, so an experiment that was
never checked out can be read as long as its outputs are in the cache (``dvc exp pull`` / ``dvc pull`` fetch them
otherwise). ``dars inspect``, ``dars compare`` and the experiment records read revisions through it.

Small files (dataset.json, split lists, images) are copied into a private temporary mirror of the repository
tree, so the ordinary readers in :mod:`pipeline_lib.data.prepared` work on them unchanged; zarr stores are read in
place through an fsspec store, so only the shards that are looked at are read. Paths outside the repository (an
external dataset root) are read from the local disk in both modes.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

from pipeline_lib.errors import UserError
from pipeline_lib.params import Params
from pipeline_lib.stores.sharded_stack import StoreLike, fsspec_store


def _range_reading_dvc_filesystem(repo_root: Path, rev: str) -> Any:
    """A ``DVCFileSystem`` whose ``cat_file`` accepts negative (from-the-end) byte offsets.

    zarr reads a shard's index as the file's last bytes (``start < 0``); fsspec's generic ``cat_file``
    resolves that through ``f.size``, which the file objects DVC hands out lack (and ``info`` gives no
    size for files inside a DVC-tracked directory), so the size comes from seeking to the end.
    """
    from dvc.api import DVCFileSystem

    class RangeReadingDVCFileSystem(DVCFileSystem):
        def cat_file(self, path, start=None, end=None, **kwargs):
            if not ((start is not None and start < 0) or (end is not None and end < 0)):
                return super().cat_file(path, start=start, end=end, **kwargs)
            with self.open(path, "rb", **kwargs) as file:
                size = file.seek(0, os.SEEK_END)
                first = 0 if start is None else (max(0, size + start) if start < 0 else start)
                stop = size if end is None else (max(0, size + end) if end < 0 else min(end, size))
                file.seek(first)
                return file.read(max(0, stop - first))

    return RangeReadingDVCFileSystem(str(repo_root), rev=rev)


class ArtifactSource:
    """The project's files in the workspace (``rev=None``) or at a git revision / DVC experiment.

    Paths are relative to ``repo_root`` (or absolute). Use as a context manager; it removes its mirror.
    """

    def __init__(self, repo_root: str | os.PathLike = ".", rev: str | None = None) -> None:
        self.repo_root = Path(repo_root).resolve()
        self.rev = rev
        self._fs: Any = None
        self._mirror: Path | None = None
        self.description = "the workspace"
        if rev is not None:
            if not (self.repo_root / ".dvc").is_dir():
                raise UserError(f"{self.repo_root}: not a DVC repository (no .dvc directory); --rev needs one")
            try:
                self._fs = _range_reading_dvc_filesystem(self.repo_root, rev)
                resolved = self._fs.repo.get_rev()
            except Exception as exc:  # dvc/scmrepo raise their own types for an unknown revision
                raise UserError(f"--rev {rev!r}: not a git revision or DVC experiment of {self.repo_root} "
                                f"({type(exc).__name__}: {exc})") from None
            self.description = f"revision {rev!r} ({str(resolved)[:10]})"
            self._mirror = Path(tempfile.mkdtemp(prefix="dars-inspect-"))

    def __enter__(self) -> "ArtifactSource":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        if self._mirror is not None:
            shutil.rmtree(self._mirror, ignore_errors=True)
            self._mirror = None
        if self._fs is not None:
            self._fs.close()
            self._fs = None

    # -- paths ---------------------------------------------------------------------------------
    def _relative(self, path: str | os.PathLike) -> str | None:
        """``path`` as a repository-relative POSIX path, or None when it lies outside the repository."""
        path = Path(path)
        absolute = Path(os.path.normpath(path if path.is_absolute() else self.repo_root / path))
        try:
            return absolute.relative_to(self.repo_root).as_posix()
        except ValueError:
            return None

    def _fs_path(self, relative: str) -> str:
        return str(PurePosixPath("/") / relative)

    def workspace_path(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        return path if path.is_absolute() else self.repo_root / path

    # -- reading -------------------------------------------------------------------------------
    def exists(self, path: str | os.PathLike) -> bool:
        relative = self._relative(path)
        if self._fs is None or relative is None:
            return self.workspace_path(path).exists()
        try:
            return bool(self._fs.exists(self._fs_path(relative)))
        except Exception:
            return False

    def read_bytes(self, path: str | os.PathLike) -> bytes:
        relative = self._relative(path)
        if self._fs is None or relative is None:
            local = self.workspace_path(path)
            if not local.is_file():
                raise UserError(f"{local}: not found")
            return local.read_bytes()
        return self._fs_call(relative, lambda: self._fs.cat_file(self._fs_path(relative)))

    def read_text(self, path: str | os.PathLike) -> str:
        return self.read_bytes(path).decode("utf-8")

    def read_json_object(self, path: str | os.PathLike) -> dict | None:
        """The JSON object in ``path``, or None when the source has no such file; UserError if it holds
        anything but a JSON object."""
        if not self.exists(path):
            return None
        try:
            value = json.loads(self.read_text(path))
        except json.JSONDecodeError as exc:
            raise UserError(f"{path} ({self.description}): not valid JSON ({exc})") from None
        if not isinstance(value, dict):
            raise UserError(f"{path} ({self.description}): expected a JSON object")
        return value

    def _fs_call(self, relative: str, call):
        """``call()``, with the filesystem's errors turned into UserErrors that say what to do."""
        try:
            return call()
        except (FileNotFoundError, IsADirectoryError):
            problem = None if not self.exists(relative) else "its data is not in the local DVC cache"
        except Exception as exc:  # dvc raises its own types, e.g. for a remote it cannot reach
            problem = f"cannot read it ({type(exc).__name__}: {exc})"
        if problem is None:
            raise UserError(f"{relative}: not found at {self.description}")
        raise UserError(f"{relative} at {self.description}: {problem}; fetch it with `dvc fetch --rev {self.rev}` "
                        f"(an experiment: `dvc exp pull <git remote> {self.rev}`)")

    def local_file(self, path: str | os.PathLike) -> Path:
        """A local path holding the file's content (at a revision: a copy in the mirror)."""
        relative = self._relative(path)
        if self._fs is None or relative is None:
            return self.workspace_path(path)
        assert self._mirror is not None
        local = self._mirror / relative
        if not local.is_file():
            data = self.read_bytes(relative)
            local.parent.mkdir(parents=True, exist_ok=True)
            local.write_bytes(data)
        return local

    def local_dir(self, path: str | os.PathLike, files: tuple[str, ...]) -> Path:
        """A local directory standing for ``path`` that holds at least ``files`` (relative to it).

        Missing files are left out rather than refused: the reader that needs one names it.
        """
        if self._fs is None or self._relative(path) is None:
            return self.workspace_path(path)
        assert self._mirror is not None
        relative = self._relative(path)
        for name in files:
            if self.exists(f"{relative}/{name}"):
                self.local_file(f"{relative}/{name}")
        local = self._mirror / relative
        local.mkdir(parents=True, exist_ok=True)
        return local

    def localize(self, path: str | os.PathLike) -> Path:
        """Make a path that points into a :meth:`local_dir` (e.g. a sample's image) readable locally.

        At a revision a path inside the mirror is fetched from the revision; a file the revision does not
        track (e.g. an unversioned dataset inside the repository) is read from the workspace instead.
        """
        path = Path(os.path.normpath(path))
        if self._mirror is None:
            return path
        try:
            relative = path.relative_to(self._mirror).as_posix()
        except ValueError:
            return path
        if self.exists(relative):
            return self.local_file(relative)
        return self.repo_root / relative

    def zarr_store(self, path: str | os.PathLike) -> StoreLike:
        """A zarr store to open with the store readers: the path itself, or a read-only fsspec store."""
        relative = self._relative(path)
        if self._fs is None or relative is None:
            return self.workspace_path(path)
        fs_path = self._fs_path(relative)
        if not self.exists(relative):
            raise UserError(f"{relative}: not found at {self.description}")
        # zarr reads a missing shard as "all fill value"; refuse up front instead of showing empty labels.
        for file in self._fs_call(relative, lambda: self._fs.find(fs_path)):
            self._fs_call(file.lstrip("/"), lambda: self._fs.open(file, "rb").close())
        return fsspec_store(self._fs, fs_path)


def load_params(source: ArtifactSource, path: str | os.PathLike = "params.yaml") -> Params:
    """``params.yaml`` as it is in ``source``."""
    return Params.parse(source.read_text(path), f"{path} ({source.description})")
