"""Open a round's artifacts from the workspace or from any git revision / DVC experiment.

An :class:`ArtifactSource` reads project files by their repository-relative path, either from the working
tree (``rev=None``) or, through ``dvc.api.DVCFileSystem``, as they were at a git revision or DVC experiment
(``rev="HEAD~1"``, a branch, a tag, a sha, an experiment name). At a revision, git-tracked files come from
git and DVC outputs from the local DVC cache, so an experiment that was never checked out can be inspected
as long as its outputs are in the cache (``dvc exp pull`` / ``dvc pull`` fetch them otherwise).

Small files (dataset.json, split lists, images) are copied into a private temporary mirror of the
repository tree, so the ordinary readers in :mod:`pipeline_lib.data.prepared` work on them unchanged; zarr
stores are read in place through an fsspec store, so only the shards that are looked at are read.
Paths outside the repository (an external dataset root) are read from the local disk in both modes.

:func:`open_round` gathers what ``dars inspect`` needs of one round: the dataset spec and unlabelled split,
the pseudo-label store, the logits store when it is available and consistent, and the stats.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from pipeline_lib.data.image_files import load_image
from pipeline_lib.data.prepared import DatasetSpec, Sample, load_label, load_spec, read_split
from pipeline_lib.errors import UserError
from pipeline_lib.layout import RoundPaths
from pipeline_lib.params import Params
from pipeline_lib.settings import self_training_round
from pipeline_lib.stores.logits_store import LogitsStore
from pipeline_lib.stores.pseudo_label_store import PseudoLabelStore
from pipeline_lib.stores.sharded_stack import MADE_BY, StoreLike, fsspec_store

# Files of a prepared-dataset directory that inspection reads (see pipeline_lib/data/prepared.py).
PREPARED_FILES = ("dataset.json", "class_distribution.json", "splits/unlabeled.txt")


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


def read_stats(source: ArtifactSource, outputs: str | os.PathLike, round_name: str) -> dict | None:
    """The round's pseudo_label_stats.json, or None when the source has none."""
    return source.read_json_object(RoundPaths.of(Path(outputs), round_name).pseudo_label_stats)


@dataclass
class RoundArtifacts:
    """One round's pseudo labels and everything needed to look at them."""

    round_name: str
    source: ArtifactSource
    spec: DatasetSpec
    samples: dict[str, Sample]  # the unlabelled split, by image id
    labels: PseudoLabelStore
    logits: LogitsStore | None  # None: confidence maps cannot be drawn (see confidence_note)
    confidence_note: str | None
    stats: dict | None
    labeled_distribution: np.ndarray  # (C,) labelled-set class shares

    @property
    def image_ids(self) -> list[str]:
        return self.labels.image_ids

    @property
    def temperature(self) -> float:
        return float(self.labels.attrs.get("temperature", 1.0))

    def pseudo_label(self, image_id: str) -> np.ndarray:
        return np.asarray(self.labels.label(self.labels.index_of(image_id)))

    def label_size(self, image_id: str) -> tuple[int, int]:
        return self.labels.label_sizes[self.labels.index_of(image_id)]

    def image(self, image_id: str) -> np.ndarray:
        return load_image(self.source.localize(self._sample(image_id).image))

    def ground_truth(self, image_id: str) -> np.ndarray | None:
        sample = self._sample(image_id)
        if sample.label is None:
            return None
        return load_label(self.source.localize(sample.label), self.spec, self.label_size(image_id))

    def confidence(self, image_id: str) -> np.ndarray | None:
        """Max softmax probability at label resolution, with the temperature the labels were made with."""
        if self.logits is None:
            return None
        from pipeline_lib.confidence.maps import confidence_and_prediction

        index = self.logits.image_ids.index(image_id)
        confidence, _ = confidence_and_prediction(self.logits.logits(index), self.logits.label_sizes[index],
                                                  self.temperature)
        return confidence

    def pseudo_distribution(self) -> np.ndarray:
        """(C,) pseudo-labelled pixels per class: from the stats, else counted over the whole store."""
        if self.stats and isinstance(self.stats.get("per_class"), dict):
            per_class = self.stats["per_class"]
            if all(name in per_class for name in self.labels.class_names):
                return np.array([per_class[name]["final_count"] for name in self.labels.class_names], np.float64)
        counts = np.zeros(len(self.labels.class_names), np.int64)
        for _, mask in self.labels.iter_labels():
            counts += np.bincount(np.asarray(mask).ravel(), minlength=256)[: len(counts)]
        return counts.astype(np.float64)

    def _sample(self, image_id: str) -> Sample:
        self.labels.index_of(image_id)  # refuses unknown ids, listing some that exist
        return self.samples[image_id]


def open_round(source: ArtifactSource, round_name: str, params_path: str | os.PathLike = "params.yaml",
               prepared: str | os.PathLike = "data/prepared",
               outputs: str | os.PathLike = "outputs") -> RoundArtifacts:
    """Open round ``round_name``'s pseudo labels (and what goes with them) from ``source``."""
    params = load_params(source, params_path)
    self_training_round(params, round_name)
    paths = RoundPaths.of(Path(outputs), round_name)
    if not source.exists(paths.pseudo_labels):
        raise UserError(f"{paths.pseudo_labels}: not found at {source.description}; make it with "
                        f"`dvc repro pseudo_label@{round_name}` (or fetch it with `dvc pull`)")
    prepared_dir = source.local_dir(prepared, PREPARED_FILES)
    spec = load_spec(prepared_dir)
    samples = {s.id: s for s in read_split(prepared_dir, "unlabeled", spec)}
    labels = PseudoLabelStore.open(source.zarr_store(paths.pseudo_labels), expect_classes=spec.classes.names,
                                   expect_image_ids=list(samples))
    logits, note = _open_matching_logits(source, paths, labels, spec)
    distribution_file = prepared_dir / "class_distribution.json"
    if not distribution_file.is_file():
        raise UserError(f"{Path(prepared) / 'class_distribution.json'}: not found at {source.description}")
    labeled = np.asarray(json.loads(distribution_file.read_text())["shares"], np.float64)
    return RoundArtifacts(round_name, source, spec, samples, labels, logits, note,
                          read_stats(source, outputs, round_name), labeled)


def _open_matching_logits(source: ArtifactSource, paths: RoundPaths, labels: PseudoLabelStore,
                          spec: DatasetSpec) -> tuple[LogitsStore | None, str | None]:
    """The soft predictions the labels were drawn from, or None and why (confidence maps are optional)."""
    if not source.exists(paths.logits):
        return None, f"{paths.logits} is not available at {source.description}: no confidence maps"
    logits = LogitsStore.open(source.zarr_store(paths.logits), expect_classes=spec.classes.names)
    if logits.attrs[MADE_BY] != labels.attrs[MADE_BY]:
        return None, (f"{paths.logits} comes from another model than the pseudo labels (rerun "
                      "`dvc repro`): no confidence maps")
    missing = set(labels.image_ids) - set(logits.image_ids)
    if missing:
        return None, f"{paths.logits} lacks {len(missing)} of the labelled images: no confidence maps"
    return logits, None
