"""Training loop: seeded batches, resume after an interruption, augmentation, loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

from pipeline_lib.data.prepared import load_spec, read_split
from pipeline_lib.data.synthetic.dataset import prepare_synthetic
from pipeline_lib.device import pick_device, resolve_precision
from pipeline_lib.errors import UserError
from pipeline_lib.models.build import build_model
from pipeline_lib.models.checkpoint import load_checkpoint, save_checkpoint
from pipeline_lib.settings import SyntheticSettings, TrainSettings
from pipeline_lib.augmentation_recipe import AugmentationSettings
from pipeline_lib.train import loop as training
from pipeline_lib.train.augmentation import augment
from pipeline_lib.train.images import TrainingImages
from pipeline_lib.train.loop import IterationBatches
from pipeline_lib.train.loss import segmentation_loss
from pipeline_project import REPO, TINY_PARAMS, deep_update
from stages.train import train as train_stage


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    prepare_synthetic(root, SyntheticSettings(seed=0, num_train_images=8, num_val_images=2, image_size=(64, 128)),
                      num_labeled=4)
    return root


BETA_1 = AugmentationSettings.from_beta(1.0)


def config(**changes) -> TrainSettings:
    values = dict(iterations=4, batch_size=2, crop_size=64, base_lr=0.01, head_lr_multiplier=10.0, momentum=0.9,
                  weight_decay=1e-4, poly_power=0.9, aux_weight=0.4, loss="pixel_mean", optimizer_state="fresh",
                  labeled_augmentation=BETA_1, pseudo_augmentation=BETA_1, pseudo_fraction=0.0, checkpoint_every=2, log_every=1, num_workers=0,
                  precision="fp32", seed=0)
    values.update(changes)
    return TrainSettings(**values)


def trained_weights(prepared, work_dir, log_dir, cfg, interrupt_after_save: bool = False, monkeypatch=None,
                    arch: str = "lraspp_mobilenet_v3_large"):
    spec = load_spec(prepared)
    labeled = TrainingImages(read_split(prepared, "labeled", spec), spec, cfg.labeled_augmentation, cfg.crop_size)
    torch.manual_seed(0)
    model = build_model(arch, spec.classes.num_classes)
    if interrupt_after_save:
        original = training.save_resume_state

        def save_then_stop(*args, **kwargs):
            original(*args, **kwargs)
            raise KeyboardInterrupt

        monkeypatch.setattr(training, "save_resume_state", save_then_stop)
    training.train(model, labeled, None, cfg, torch.device("cpu"), work_dir, "fingerprint", log_dir)
    return {k: v.clone() for k, v in model.state_dict().items()}


# PSPNet's head has Dropout2d: its resumed run equals the uninterrupted one only if the generator state is
# saved and restored with the weights.
@pytest.mark.parametrize("arch", ["lraspp_mobilenet_v3_large", "pspnet_resnet18"])
def test_interrupted_run_resumes_to_the_same_weights(prepared, tmp_path, monkeypatch, arch):
    cfg = config()
    straight = trained_weights(prepared, tmp_path / "a_work", tmp_path / "a_log", cfg, arch=arch)
    with pytest.raises(KeyboardInterrupt):
        trained_weights(prepared, tmp_path / "b_work", tmp_path / "b_log", cfg, True, monkeypatch, arch=arch)
    assert (tmp_path / "b_work" / "state.pt").is_file()
    assert not (tmp_path / "b_log").exists()
    monkeypatch.undo()
    resumed = trained_weights(prepared, tmp_path / "b_work", tmp_path / "b_log", cfg, arch=arch)
    for key, value in straight.items():
        assert torch.equal(value, resumed[key]), key
    # and the saved checkpoints are the same bytes
    for run, weights in (("a", straight), ("b", resumed)):  # same file name: torch.save records it
        model = build_model(arch, load_spec(prepared).classes.num_classes)
        model.load_state_dict(weights)
        save_checkpoint(tmp_path / run / "model.pt", model, arch, list(load_spec(prepared).classes.names),
                        {"round": "r0"})
    assert (tmp_path / "a" / "model.pt").read_bytes() == (tmp_path / "b" / "model.pt").read_bytes()
    assert not (tmp_path / "b_work").exists()  # resume state removed after success
    assert (tmp_path / "b_log" / "train" / "loss.tsv").is_file()


def test_state_from_other_inputs_is_not_resumed_but_kept(prepared, tmp_path, monkeypatch, capsys):
    cfg = config()
    with pytest.raises(KeyboardInterrupt):
        trained_weights(prepared, tmp_path / "work", tmp_path / "log", cfg, True, monkeypatch)
    monkeypatch.undo()
    state = torch.load(tmp_path / "work" / "state.pt", weights_only=True)
    state["fingerprint"] = "other inputs"
    torch.save(state, tmp_path / "work" / "state.pt")
    saved = (tmp_path / "work" / "state.pt").read_bytes()
    fresh = trained_weights(prepared, tmp_path / "work", tmp_path / "log", cfg)
    straight = trained_weights(prepared, tmp_path / "w2", tmp_path / "l2", cfg)
    assert all(torch.equal(v, straight[k]) for k, v in fresh.items())
    # not resumed, and not lost either: kept beside, byte for byte, for a user who reverts what changed
    assert (tmp_path / "work.superseded" / "state.pt").read_bytes() == saved
    assert f"{tmp_path / 'work' / 'state.pt'} (iteration {state['iteration']}) was saved by other" in capsys.readouterr().err


def test_batches_depend_only_on_seed_and_iteration():
    full = list(IterationBatches([10, 20], [2, 3], seed=5, start=0, total=6))
    tail = list(IterationBatches([10, 20], [2, 3], seed=5, start=3, total=6))
    assert full[3:] == tail
    assert [len(b) for b in full] == [5] * 6
    assert all(k[0] == 0 for k in full[0][:2]) and all(k[0] == 1 for k in full[0][2:])
    other = list(IterationBatches([10, 20], [2, 3], seed=6, start=0, total=6))
    assert other != full


def test_batch_split_keeps_both_kinds():
    assert config(batch_size=8, pseudo_fraction=0.5).batch_split(True) == (4, 4)
    assert config(batch_size=2, pseudo_fraction=0.9).batch_split(True) == (1, 1)
    assert config(batch_size=8).batch_split(False) == (8, 0)


def test_augment_is_seeded_and_crops():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (60, 90, 3), dtype=np.uint8)
    label = rng.integers(0, 19, (60, 90), dtype=np.uint8)
    a = augment(image, label, np.random.default_rng(1), BETA_1, 64)
    b = augment(image, label, np.random.default_rng(1), BETA_1, 64)
    assert a[0].shape == (64, 64, 3) and a[1].shape == (64, 64)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert set(np.unique(a[1])) <= set(range(19)) | {255}  # nearest-neighbour labels, 255 for padding


@pytest.mark.parametrize("recipe", ["beta 0", "none"])
def test_strength_zero_only_crops(recipe):
    image = np.arange(32 * 48 * 3, dtype=np.uint8).reshape(32, 48, 3)
    label = (np.arange(32 * 48) % 19).astype(np.uint8).reshape(32, 48)
    out_image, out_label = augment(image, label, np.random.default_rng(3), AugmentationSettings.parse(recipe), 32)
    # A pure crop: the output is a window of the input.
    windows = [(image[:, x:x + 32], label[:, x:x + 32]) for x in range(48 - 32 + 1)]
    assert any(np.array_equal(out_image, w[0]) and np.array_equal(out_label, w[1]) for w in windows)


def test_loss_ignores_255_and_adds_aux():
    logits = torch.zeros(1, 3, 2, 2)
    logits[:, 0] = 5.0
    target = torch.full((1, 4, 4), 255, dtype=torch.long)
    target[0, 0, 0] = 0
    only_main = segmentation_loss({"out": logits}, target, aux_weight=0.4)
    with_aux = segmentation_loss({"out": logits, "aux": logits}, target, aux_weight=0.4)
    assert only_main.item() == pytest.approx(torch.log(1 + 2 * torch.exp(torch.tensor(-5.0))).item(), rel=1e-4)
    assert with_aux.item() == pytest.approx(1.4 * only_main.item(), rel=1e-5)


def test_labelled_only_control_round_needs_no_pseudo_labels(prepared, tmp_path):
    """self_training.pseudo_fraction = 0 trains a round on labelled images only; > 0 needs its pseudo labels."""
    spec = load_spec(prepared)
    outputs = tmp_path / "outputs"
    torch.manual_seed(0)
    save_checkpoint(outputs / "r0" / "model.pt", build_model("lraspp_mobilenet_v3_large", spec.classes.num_classes),
                    "lraspp_mobilenet_v3_large", list(spec.classes.names), {})
    params = deep_update(yaml.safe_load((REPO / "params.yaml").read_text()), TINY_PARAMS)
    args = dict(round_name="r1", params=tmp_path / "params.yaml", prepared=prepared, outputs=outputs,
                resume_dir=tmp_path / "resume")

    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(UserError, match="pseudo labels not found"):
        train_stage(**args)

    params["self_training"]["pseudo_fraction"] = 0
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    train_stage(**args)
    _, checkpoint = load_checkpoint(outputs / "r1" / "model.pt")
    assert checkpoint["provenance"]["teacher"] == "r0"
    assert "pseudo_labels_sha256" not in checkpoint["provenance"]
    assert checkpoint["provenance"]["train"]["pseudo_fraction"] == 0
    # train.precision auto asks for the device's faster one: the checkpoint says what it was (bf16 or fp32 on a CPU).
    device = pick_device()
    precision = resolve_precision(device, params["train"]["precision"], checkpoint["arch"])
    assert checkpoint["provenance"]["trained_with"] == {"device": device.type, "precision": precision}


def test_continue_starts_each_round_where_the_authors_schedule_stands():
    """Their round k resumes the teacher at epoch k·E of a poly schedule over (k+1)·E epochs; the lr at round k's
    first step, and at any later step, equals that schedule's value."""
    from pipeline_lib.params import Params
    from pipeline_lib.train.loop import poly_lr

    p = Params.load(REPO / "configs" / "cityscapes_1-8_pspnet50_crop361.yaml")
    base, epochs = p.get("train.base_lr", float), 200
    for k, name in ((1, "r1"), (2, "r2")):
        settings = TrainSettings.from_params(p, name)
        steps_per_epoch = settings.iterations // epochs
        for step in (0, 1, settings.iterations // 2, settings.iterations - 1):
            their_iteration = k * epochs * steps_per_epoch + step
            theirs = base * (1 - their_iteration / ((k + 1) * epochs * steps_per_epoch)) ** 0.9
            assert poly_lr(settings.base_lr, step, settings.iterations, 0.9) == pytest.approx(theirs, rel=1e-12)
    assert TrainSettings.from_params(p, "r1").base_lr / base == pytest.approx(0.536, abs=5e-4)
    assert TrainSettings.from_params(p, "r2").base_lr / base == pytest.approx(0.372, abs=5e-4)


def test_round_settings_override_train_and_are_checked():
    from pipeline_lib.params import Params

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["rounds"]["r1"].update(base_lr=0.03, batch_size=6, pseudo_fraction=0.5, optimizer_state="teacher")

    r1 = TrainSettings.from_params(Params(params), "r1")
    assert (r1.base_lr, r1.batch_size, r1.batch_split(True), r1.optimizer_state) == (0.03, 6, (3, 3), "teacher")
    params["rounds"]["r1"].update(init="scratch")
    with pytest.raises(UserError, match="'rounds.r1.optimizer_state' 'teacher' carries on from the teacher's"):
        TrainSettings.from_params(Params(params), "r1")
    params["rounds"]["r1"].update(init="teacher", base_lr="later")
    with pytest.raises(UserError, match="'rounds.r1.base_lr' must be a number or continue, got 'later'"):
        TrainSettings.from_params(Params(params), "r1")


def test_momentum_is_carried_over_and_a_mismatch_refused():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    teacher = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(4, 3)).sum().backward()
    teacher.step()
    saved = teacher.state_dict()["state"]
    student = torch.optim.SGD([{"params": list(model.parameters()), "lr": 0.02, "initial_lr": 0.02}], momentum=0.9)
    training.load_momentum(student, saved)
    assert student.param_groups[0]["lr"] == 0.02  # its own schedule, the teacher's buffers
    for index, parameter in enumerate(model.parameters()):
        assert torch.equal(student.state[parameter]["momentum_buffer"], saved[index]["momentum_buffer"])
    other = torch.optim.SGD(torch.nn.Linear(5, 2).parameters(), lr=0.1, momentum=0.9)
    with pytest.raises(UserError, match="does not match this model's 2 parameters; set the round's optimizer_state"):
        training.load_momentum(other, saved)


def test_a_round_carries_the_teachers_momentum(prepared, tmp_path, monkeypatch):
    """optimizer_state: teacher starts the round from the momentum saved in the teacher's checkpoint."""
    spec = load_spec(prepared)
    cfg = config(iterations=2)
    labeled = TrainingImages(read_split(prepared, "labeled", spec), spec, cfg.labeled_augmentation, cfg.crop_size)
    torch.manual_seed(0)
    model, momentum = training.train(build_model("lraspp_mobilenet_v3_large", spec.classes.num_classes), labeled,
                                     None, cfg, torch.device("cpu"), tmp_path / "w1", "f1", tmp_path / "l1")
    save_checkpoint(tmp_path / "r0.pt", model, "lraspp_mobilenet_v3_large", list(spec.classes.names), {},
                    optimizer_state=momentum)
    _, checkpoint = load_checkpoint(tmp_path / "r0.pt")
    saved = checkpoint["optimizer_state"]
    assert len(saved) == sum(1 for p in model.parameters() if p.requires_grad)

    seen = {}
    original = training.load_momentum

    def spy(optimizer, buffers):
        original(optimizer, buffers)
        first = optimizer.param_groups[0]["params"][0]  # position 0 of the saved state
        seen["first"] = optimizer.state[first]["momentum_buffer"].clone()
    monkeypatch.setattr(training, "load_momentum", spy)
    training.train(model, labeled, None, cfg, torch.device("cpu"), tmp_path / "w2", "f2", tmp_path / "l2",
                   momentum=saved)
    assert torch.equal(seen["first"], saved[0]["momentum_buffer"])
