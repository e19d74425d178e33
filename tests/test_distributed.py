"""Several processes per stage: shard ownership, the shared atomic store, batch and loss splitting, and real
2-process gloo runs of the infer, confidence, pseudo-label and train stages under torchrun (CPU); the
temperature infer fits and the confidence stage divides by."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline_lib.atomic import atomic_path
from pipeline_lib.data.classes import CITYSCAPES
from pipeline_lib.data.synthetic.dataset import prepare_synthetic
from pipeline_lib.distributed import (
    launcher_environment,
    rank_seed,
    relaunch_under_torchrun,
    torchrun_command,
    under_torchrun,
)
from pipeline_lib.errors import UserError
from pipeline_lib.models.build import build_model
from pipeline_lib.models.checkpoint import save_checkpoint
from pipeline_lib.params import Params
from pipeline_lib.settings import DistributedSettings, SyntheticSettings
from pipeline_lib.stores.logits_store import LogitsStore, write_logits_store
from pipeline_lib.stores.pseudo_label_store import PseudoLabelStore
from pipeline_lib.stores.sharded_stack import shard_images, shards_of_writer
from pipeline_lib.train.loop import IterationBatches
from pipeline_lib.train.loss import segmentation_loss
from pipeline_lib.train.resume import forget_metrics_after

REPO = Path(__file__).resolve().parents[1]
ARCH = "lraspp_mobilenet_v3_large"  # the smallest model; no aux head


# --- shard ownership and the store written by several writers ------------------------------------------------

@given(count=st.integers(1, 40), per_shard=st.integers(1, 8), world_size=st.integers(1, 5))
def test_writers_own_disjoint_whole_shards_covering_every_image(count, per_shard, world_size):
    owned = [shards_of_writer(count, per_shard, rank, world_size) for rank in range(world_size)]
    shards = [s for rank_shards in owned for s in rank_shards]
    assert sorted(shards) == list(range(-(-count // per_shard)))  # each shard exactly once
    images = [i for rank_shards in owned for i in shard_images(rank_shards, count, per_shard)]
    assert sorted(images) == list(range(count))
    assert max(map(len, owned)) - min(map(len, owned)) <= 1  # balanced to within one shard


def test_shards_of_writer_refuses_a_rank_outside_the_world():
    with pytest.raises(ValueError, match="rank 2"):
        shards_of_writer(10, 2, 2, 2)


class ThreadWriters:
    """``world_size`` threads standing in for processes: a barrier and a broadcast slot they share."""

    def __init__(self, rank: int, world_size: int, barrier: threading.Barrier, slot: list) -> None:
        self.rank, self.world_size, self._barrier, self._slot = rank, world_size, barrier, slot

    def barrier(self) -> None:
        self._barrier.wait(timeout=60)

    def broadcast(self, value):
        if self.rank == 0:
            self._slot[0] = value
        self.barrier()
        shared = self._slot[0]
        self.barrier()  # nobody broadcasts again before every rank has read this value
        return shared


def write_with_threads(path: Path, world_size: int, logits: list[np.ndarray], per_shard: int) -> list[set[int]]:
    """Write a store as ``world_size`` concurrent writers; the image indices each one predicted."""
    sizes = [a.shape[1:] for a in logits]
    ids = [f"img{i}" for i in range(len(logits))]
    barrier, slot = threading.Barrier(world_size), [None]
    predicted: list[set[int]] = [set() for _ in range(world_size)]
    errors: list[BaseException] = []

    def writer(rank: int) -> None:
        def predict(i: int) -> np.ndarray:
            predicted[rank].add(i)
            return logits[i]
        try:
            write_logits_store(path, ids, sizes, sizes, ["a", "b"], predict,
                               {"output_stride": 8, "checkpoint_sha256": "c" * 64, "model_arch": "toy",
                                "split": "unlabeled"}, images_per_shard=per_shard,
                               writers=ThreadWriters(rank, world_size, barrier, slot))
        except BaseException as exc:  # re-raised below, in the test's thread
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=writer, args=(rank,)) for rank in range(world_size)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return predicted


def store_files(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@settings(max_examples=10, deadline=None)
@given(count=st.integers(1, 9), per_shard=st.integers(1, 4), world_size=st.integers(2, 4), seed=st.integers(0, 99))
def test_store_written_by_several_writers_is_the_single_writer_store(tmp_path_factory, count, per_shard, world_size,
                                                                      seed):
    rng = np.random.default_rng(seed)
    logits = [rng.normal(0, 3, (2, *rng.integers(1, 5, 2))).astype(np.float16) for _ in range(count)]
    root = tmp_path_factory.mktemp("writers")
    write_with_threads(root / "one.zarr", 1, logits, per_shard)
    predicted = write_with_threads(root / "many.zarr", world_size, logits, per_shard)
    assert store_files(root / "many.zarr") == store_files(root / "one.zarr")  # byte for byte
    assert sorted(i for p in predicted for i in p) == list(range(count))  # every image predicted exactly once
    assert sorted(p.name for p in root.iterdir()) == ["many.zarr", "one.zarr"]  # no temporary directory left


def test_a_failing_writer_leaves_no_store(tmp_path):
    logits = [np.zeros((2, 3, 3), np.float16)] * 4
    logits[3] = np.full((2, 3, 3), np.inf, np.float32)  # rank 1's shard (images 2-3) is refused
    with pytest.raises(ValueError, match="img3.*not finite"):
        write_with_threads(tmp_path / "s.zarr", 2, logits, per_shard=2)
    assert list(tmp_path.iterdir()) == []


# --- the batch and the loss split over ranks ----------------------------------------------------------------

@given(labeled=st.integers(1, 6), pseudo=st.integers(0, 6), world_size=st.integers(1, 4), seed=st.integers(0, 9))
def test_ranks_share_out_exactly_the_single_process_batch(labeled, pseudo, world_size, seed):
    per_batch = [labeled] + ([pseudo] if pseudo else [])
    sizes = [7, 11][:len(per_batch)]
    whole = list(IterationBatches(sizes, per_batch, seed, 2, 5))
    shares = [list(IterationBatches(sizes, per_batch, seed, 2, 5, rank, world_size)) for rank in range(world_size)]
    for iteration, batch in enumerate(whole):
        parts = [share[iteration] for share in shares]
        assert sorted(key for part in parts for key in part) == sorted(batch)
        assert all(part == batch[rank::world_size] for rank, part in enumerate(parts))


@settings(max_examples=20, deadline=None)
@given(images=st.integers(2, 6), world_size=st.integers(1, 4), seed=st.integers(0, 99))
def test_rank_losses_average_to_the_whole_batch_loss(images, world_size, seed):
    """With each rank's loss normalised by (the batch's valid pixels / world size), DDP's gradient average is
    the gradient of the single-process loss; the losses (linear in the same way) must average to it."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(images, 4, 3, 5, generator=generator, dtype=torch.float64)
    aux = torch.randn(images, 4, 2, 3, generator=generator, dtype=torch.float64)
    target = torch.randint(0, 4, (images, 6, 10), generator=generator)
    target[torch.rand(target.shape, generator=generator) < 0.4] = 255
    target[0] = 255  # an image with nothing to learn: ranks differ in their numbers of valid pixels
    whole = segmentation_loss({"out": logits, "aux": aux}, target, 0.4)
    valid = float((target != 255).sum())
    ranks = [segmentation_loss({"out": logits[r::world_size], "aux": aux[r::world_size]}, target[r::world_size],
                               0.4, pixel_normalizer=valid / world_size)
             for r in range(min(world_size, images))]
    assert torch.isclose(sum(ranks) / world_size, whole, rtol=1e-5)


def test_resuming_forgets_the_curve_rows_logged_after_the_resume_state(tmp_path):
    (tmp_path / "train").mkdir()
    loss, lr = tmp_path / "train" / "loss.tsv", tmp_path / "train" / "lr.tsv"
    loss.write_text("step\tloss\n2\t3.0\n4\t2.5\n6\t2.1\n")
    lr.write_text("step\tlr\n2\t0.01\n")
    forget_metrics_after(tmp_path, 4)
    assert loss.read_text() == "step\tloss\n2\t3.0\n4\t2.5\n"
    assert lr.read_text() == "step\tlr\n2\t0.01\n"


# --- settings, seeds and the launcher --------------------------------------------------------------------------

def test_settings_default_to_one_process_and_check_their_values():
    assert DistributedSettings.from_params(Params({})) == DistributedSettings(1, False)
    assert DistributedSettings.from_params(Params({"distributed": {"processes": 4, "sync_batchnorm": True}})) \
        == DistributedSettings(4, True)
    with pytest.raises(UserError, match="'distributed.processes' must be > 0"):
        DistributedSettings.from_params(Params({"distributed": {"processes": 0}}))
    with pytest.raises(UserError, match="'distributed.sync_batchnorm' must be a bool"):
        DistributedSettings.from_params(Params({"distributed": {"sync_batchnorm": "yes"}}))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without GPUs")
def test_sync_batchnorm_over_cpu_processes_is_refused_before_launching():
    DistributedSettings(1, True).check_sync_batchnorm(on_gpus=False)  # one process: nothing to synchronise
    DistributedSettings(2, True).check_sync_batchnorm(on_gpus=True)
    with pytest.raises(UserError, match="distributed.sync_batchnorm needs GPUs"):
        DistributedSettings(2, True).check_sync_batchnorm(on_gpus=False)
    # A process already in a group checks the group it is in (torchrun started by hand with its own count).
    DistributedSettings(1, True).check_sync_batchnorm(on_gpus=True, processes=2)
    with pytest.raises(UserError, match="distributed.sync_batchnorm needs GPUs"):
        DistributedSettings(1, True).check_sync_batchnorm(on_gpus=False, processes=2)


def test_sync_batchnorm_with_the_stages_told_to_use_the_cpu_is_one_error_line_from_train(tmp_path):
    # The stages' device decides, not the machine's: on a GPU machine DARS_DEVICE=cpu starts CPU processes.
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["distributed"] = {"processes": 2, "sync_batchnorm": True}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    result = subprocess.run([sys.executable, "-m", "stages.cli", "train", "--round", "r0", "--params",
                             str(tmp_path / "params.yaml"), "--prepared", str(tmp_path)],
                            cwd=tmp_path, capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "DARS_DEVICE": "cpu"})
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert lines[0].startswith("error: distributed.sync_batchnorm needs GPUs")


def test_rank_seeds_keep_rank_zero_and_differ_between_ranks():
    assert rank_seed(7, 0) == 7
    assert len({rank_seed(7, rank) for rank in range(8)}) == 8
    assert rank_seed(7, 3) == rank_seed(7, 3)


def test_torchrun_detection_and_command():
    env = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}
    assert under_torchrun(env) and not under_torchrun({k: v for k, v in env.items() if k != "RANK"})
    command = torchrun_command(3, ["infer", "--round", "r1"])
    assert command[1:] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=3", "-m", "stages.cli",
                           "infer", "--round", "r1"]


def test_srun_variables_are_mapped_as_torchrun_s():
    slurm = {"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1", "MASTER_ADDR": "node0"}
    assert launcher_environment(slurm) == {"RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1",
                                           "MASTER_ADDR": "node0", "MASTER_PORT": "29500"}
    assert launcher_environment({**slurm, "SLURM_NTASKS": "1"}) is None  # an allocation's single task: no group
    assert launcher_environment({}) is None
    torchrun = {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "MASTER_ADDR": "a", "MASTER_PORT": "1"}
    assert launcher_environment({**slurm, **torchrun}) == torchrun  # torchrun's own variables win
    with pytest.raises(UserError, match="MASTER_ADDR is not set"):
        launcher_environment({k: v for k, v in slurm.items() if k != "MASTER_ADDR"})


def test_one_process_is_not_relaunched(monkeypatch):
    monkeypatch.setattr("subprocess.Popen", lambda *a, **k: pytest.fail("must not start processes"))
    assert relaunch_under_torchrun(1, ["train"]) is False


# --- real runs: 2 gloo processes on the CPU under torchrun ------------------------------------------------------

needs_gloo = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="no gloo backend")


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A tiny synthetic dataset, a randomly initialised r0 teacher and params for 1 and 2 processes."""
    root = tmp_path_factory.mktemp("ddp")
    with atomic_path(root / "prepared") as tmp:
        # 5 labelled + 11 unlabelled images: at 2 per shard, 3 and 6 shards, the last ones partly full.
        prepare_synthetic(tmp, SyntheticSettings(seed=0, num_train_images=16, num_val_images=1, image_size=(64, 128)),
                          num_labeled=5)
    torch.manual_seed(0)
    save_checkpoint(root / "teacher.pt", build_model(ARCH, CITYSCAPES.num_classes), ARCH,
                    list(CITYSCAPES.names), {})
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["model"]["arch"] = ARCH
    params["train"].update(iterations=4, batch_size=4, crop_size=64, checkpoint_every=2, log_every=2,
                           num_workers=0)
    for entry in params["rounds"].values():  # the rounds' own iteration counts (1,000) would override train's
        entry["iterations"] = 4
    params["inference"]["images_per_shard"] = 2
    for processes in (1, 2):
        params["distributed"] = {"processes": processes, "sync_batchnorm": False}
        (root / f"params{processes}.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return root


@pytest.fixture
def torchrun_env(monkeypatch):
    """The launched processes use one CPU thread each, like the in-process single-process run."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # CPU float sums depend on the thread count; the comparison needs equal ones
    yield
    torch.set_num_threads(threads)


def outputs_with_teacher(project: Path, name: str) -> Path:
    outputs = project / name
    (outputs / "r0").mkdir(parents=True)
    (outputs / "r0" / "model.pt").write_bytes((project / "teacher.pt").read_bytes())
    return outputs


def pseudo_labelled_round(project: Path, name: str) -> tuple[Path, dict]:
    """Round r1's infer, confidence and pseudo_label stages in one process, into a fresh outputs folder; returns it
    and the stage arguments."""
    from stages.confidence import confidence
    from stages.infer import infer
    from stages.pseudo_label import pseudo_label

    outputs = outputs_with_teacher(project, name)
    args = dict(round_name="r1", params=project / "params1.yaml", prepared=project / "prepared", outputs=outputs)
    for stage in (infer, confidence, pseudo_label):
        stage(**args)
    return outputs, args


@needs_gloo
def test_two_processes_write_the_same_logits_confidences_and_pseudo_labels_as_one(project, torchrun_env, capfd):
    from stages.confidence import confidence
    from stages.infer import infer
    from stages.pseudo_label import pseudo_label

    runs = {}
    for processes in (1, 2):
        outputs = outputs_with_teacher(project, f"infer{processes}")
        args = dict(round_name="r1", params=project / f"params{processes}.yaml", prepared=project / "prepared",
                    outputs=outputs)
        for stage in (infer, confidence, pseudo_label):
            stage(**args)
            if processes == 2:  # each stage really went through torchrun
                assert "running 2 processes" in capfd.readouterr().out
        runs[processes] = outputs / "r1"

    for store in ("logits.zarr", "labeled_logits.zarr"):
        one, two = LogitsStore.open(runs[1] / store), LogitsStore.open(runs[2] / store)
        assert two.attrs == one.attrs and len(one) in (5, 11)
        for (i, a), (_, b) in zip(one.iter_logits(), two.iter_logits()):
            assert np.array_equal(a, b), f"{store}: image {one.image_ids[i]} differs"
        assert store_files(runs[2] / store) == store_files(runs[1] / store)
    # The histograms summed over ranks, the thresholds shared, each rank's shards: the very same bytes.
    for store in ("confidences.zarr", "pseudo_labels.zarr"):
        assert store_files(runs[2] / store) == store_files(runs[1] / store), store
    labels_one, labels_two = (PseudoLabelStore.open(runs[p] / "pseudo_labels.zarr") for p in (1, 2))
    assert all(np.array_equal(labels_one.label(i), labels_two.label(i)) for i in range(len(labels_one)))
    for name in ("pseudo_label_stats.json", "pseudo_label_metrics.json", "class_distribution.csv"):
        assert (runs[1] / name).read_text() == (runs[2] / name).read_text(), name
    assert not [p for p in runs[2].iterdir() if p.name.startswith(".")]  # no temporary store left behind


@needs_gloo
def test_two_process_training_resumes_after_a_crash_and_writes_the_checkpoint(project, torchrun_env, capfd):
    from stages.train import train

    outputs, resume = project / "train2", project / "resume"
    outputs.mkdir()
    (outputs / "r0").write_text("")  # a file where the round's directory belongs: rank 0 fails at the very end
    args = dict(round_name="r0", params=project / "params2.yaml", prepared=project / "prepared",
                outputs=outputs, resume_dir=resume)
    with pytest.raises(UserError, match="the 2-process run failed"):
        train(**args)
    assert (resume / "r0" / "state.pt").is_file()  # saved by rank 0 after iteration 2 of 4
    capfd.readouterr()

    (outputs / "r0").unlink()
    train(**args)
    out = capfd.readouterr().out
    assert "resuming from iteration 2" in out and "2 × cpu (gloo)" in out
    checkpoint = torch.load(outputs / "r0" / "model.pt", weights_only=True)
    assert checkpoint["provenance"]["distributed"] == {"processes": 2, "backend": "gloo", "sync_batchnorm": False}
    assert not any(k.startswith("module.") for k in checkpoint["model"])  # the unwrapped model's weights
    assert all(torch.isfinite(v).all() for v in checkpoint["model"].values() if v.is_floating_point())
    losses = (outputs / "r0" / "train_log" / "train" / "loss.tsv").read_text().split()
    assert losses[:2] == ["step", "loss"] and losses[2::2] == ["2", "4"]  # the resumed log carries on
    assert not (resume / "r0").exists()


@needs_gloo
def test_two_processes_train_a_round_with_the_per_source_loss(project, torchrun_env, capfd):
    """Each rank runs each source as its own forward pass inside one DDP call; momentum is carried over."""
    from stages.train import train

    outputs, args = pseudo_labelled_round(project, "per_source")
    params = yaml.safe_load((project / "params2.yaml").read_text())
    params["train"].update(batch_size=8, loss="per_source")  # 4 + 4: two of each source per rank
    (project / "per_source.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    train(**dict(args, params=project / "per_source.yaml", resume_dir=project / "resume_per_source"))
    assert "2 × cpu (gloo)" in capfd.readouterr().out
    checkpoint = torch.load(outputs / "r1" / "model.pt", weights_only=True)
    assert checkpoint["provenance"]["train"]["loss"] == "per_source"
    assert all(torch.isfinite(v).all() for v in checkpoint["model"].values() if v.is_floating_point())
    assert checkpoint["optimizer_state"] and all(torch.isfinite(entry["momentum_buffer"]).all()
                                                 for entry in checkpoint["optimizer_state"].values())


def test_infer_records_the_fitted_temperature_and_confidence_divides_by_it_only_when_asked(project, torchrun_env):
    from pipeline_lib.data.prepared import load_label, load_spec, read_split
    from pipeline_lib.infer.temperature import fit_temperature
    from pipeline_lib.stores.confidence_store import ConfidenceStore
    from stages.confidence import confidence
    from stages.infer import infer

    outputs = outputs_with_teacher(project, "temperature")
    args = dict(round_name="r1", params=project / "params1.yaml", prepared=project / "prepared", outputs=outputs)
    infer(**args)
    labeled_logits = LogitsStore.open(outputs / "r1" / "labeled_logits.zarr")
    spec, labeled = load_spec(project / "prepared"), read_split(project / "prepared", "labeled")
    fitted = fit_temperature([labeled_logits.logits(i) for i in range(len(labeled))],
                             [load_label(s.label, spec) for s in labeled])
    assert LogitsStore.open(outputs / "r1" / "logits.zarr").attrs["fitted_temperature"] == fitted != 1.0

    confidence(**args)
    plain = ConfidenceStore.open(outputs / "r1" / "confidences.zarr")
    assert plain.temperature == 1.0
    plain_maps = plain.maps(0)
    params = yaml.safe_load((project / "params1.yaml").read_text())
    params["pseudo_label"]["temperature_scaling"] = True
    (project / "params_ts.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    confidence(**{**args, "params": project / "params_ts.yaml"})
    scaled = ConfidenceStore.open(outputs / "r1" / "confidences.zarr")
    assert scaled.temperature == fitted
    assert np.array_equal(scaled.maps(0)[1], plain_maps[1])  # the same classes, other confidences
    assert not np.array_equal(scaled.maps(0)[0], plain_maps[0])


@needs_gloo
def test_two_srun_tasks_write_what_one_process_writes(project, torchrun_env, tmp_path):
    """Two processes started as srun starts them (SLURM's variables only), as on a cluster."""
    import os
    import shutil
    import socket

    single, args = pseudo_labelled_round(project, "srun1")
    tasks = tmp_path / "outputs"
    (tasks / "r1").mkdir(parents=True)
    shutil.copytree(single / "r0", tasks / "r0")
    for store in ("logits.zarr", "labeled_logits.zarr"):
        shutil.copytree(single / "r1" / store, tasks / "r1" / store)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k not in TORCHRUN_NAMES}
    env.update(OMP_NUM_THREADS="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), SLURM_NTASKS="2",
               PYTHONPATH=str(REPO))
    for stage in ("confidence", "pseudo-label"):
        command = [sys.executable, "-m", "stages.cli", stage, "--round", "r1", "--params",
                   str(project / "params2.yaml"), "--prepared", str(project / "prepared"), "--outputs", str(tasks)]
        ranks = [subprocess.Popen(command, env={**env, "SLURM_PROCID": str(r), "SLURM_LOCALID": str(r)},
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for r in (0, 1)]
        outputs = [rank.communicate(timeout=300)[0] for rank in ranks]
        assert [rank.returncode for rank in ranks] == [0, 0], outputs
        assert "running 2 processes" not in outputs[0]  # joined srun's group, did not start torchrun
    for name in ("confidences.zarr", "pseudo_labels.zarr"):
        assert store_files(tasks / "r1" / name) == store_files(single / "r1" / name), name
    assert (tasks / "r1" / "pseudo_label_stats.json").read_text() == \
        (single / "r1" / "pseudo_label_stats.json").read_text()


TORCHRUN_NAMES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "SLURM_PROCID", "SLURM_NTASKS",
                  "SLURM_LOCALID")


def descendants(pid: int) -> set[int]:
    """The living (not zombie) processes below ``pid``, from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@needs_gloo
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_killing_the_launcher_kills_its_workers_and_nothing_is_written_after(project, tmp_path):
    params = yaml.safe_load((project / "params2.yaml").read_text())
    params["train"].update(iterations=100_000, checkpoint_every=100_000)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    launcher = subprocess.Popen(
        [sys.executable, "-m", "stages.cli", "train", "--round", "r0", "--params", str(tmp_path / "params.yaml"),
         "--prepared", str(project / "prepared"), "--outputs", str(tmp_path / "outputs"),
         "--resume-dir", str(tmp_path / "resume")],
        cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while len(descendants(launcher.pid)) < 3:  # torchrun and its two workers
            assert launcher.poll() is None and time.monotonic() < deadline, launcher.stdout.read()
            time.sleep(0.2)
        time.sleep(3)  # the workers past their start-up, in the training loop
        tree = descendants(launcher.pid)
    finally:
        os.kill(launcher.pid, signal.SIGKILL)
        launcher.wait()
    deadline = time.monotonic() + 30
    while any(alive(pid) for pid in tree) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [pid for pid in tree if alive(pid)]
    time.sleep(1)
    assert not (tmp_path / "outputs" / "r0" / "model.pt").exists()
