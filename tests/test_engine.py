import math

import pandas as pd
import pytest
import torch
from torch import nn

from helpers import engine
from helpers.engine import (
    NonFiniteLossError,
    evaluate_loss,
    fit,
    load_checkpoint,
    predict,
    predict_with_targets,
    train_one_epoch,
)
from helpers.env import seed_everything
from helpers.models import SMALL, build_detector

SIZE = 64
pytestmark = pytest.mark.usefixtures("one_thread")


def bright_squares(n: int, seed: int = 0) -> tuple[list[torch.Tensor], list[dict]]:
    """Dark noisy images, each with one obvious bright square (the 'lesion')."""
    g = torch.Generator().manual_seed(seed)
    images, targets = [], []
    for _ in range(n):
        img = 0.1 + 0.05 * torch.rand(3, SIZE, SIZE, generator=g)
        side = int(torch.randint(14, 24, (1,), generator=g))
        x, y = (int(v) for v in torch.randint(2, SIZE - side - 2, (2,), generator=g))
        img[:, y:y + side, x:x + side] = 0.9
        images.append(img)
        targets.append({"boxes": torch.tensor([[x, y, x + side, y + side]], dtype=torch.float32),
                        "labels": torch.ones(1, dtype=torch.int64)})
    return images, targets


def small_model() -> nn.Module:
    seed_everything(0)
    return build_detector(SMALL, min_size=SIZE, max_size=SIZE)


def bn_model() -> nn.Module:
    """A random-init model with live BatchNorm (what torchvision builds without weights)."""
    seed_everything(0)
    return build_detector("fasterrcnn_mobilenet_v3_large_320_fpn", pretrained=False,
                          min_size=SIZE, max_size=SIZE)


def test_training_lowers_the_loss_on_a_repeated_batch():
    model = small_model()
    batch = bright_squares(4)
    before = evaluate_loss(model, [batch], "cpu")["loss"]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    means = train_one_epoch(model, [batch] * 30, optimizer, "cpu", warmup_iters=5,
                            progress=False)
    after = evaluate_loss(model, [batch], "cpu")["loss"]
    assert set(means) == {"loss", "loss_classifier", "loss_box_reg", "loss_objectness",
                          "loss_rpn_box_reg"}
    assert math.isclose(means["loss"], sum(v for k, v in means.items() if k != "loss"),
                        rel_tol=1e-6)
    assert after < 0.6 * before, f"loss went from {before:.3f} to {after:.3f} only"


def test_warmup_scales_the_lr_and_gives_it_back(monkeypatch):
    model = small_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    seen = []
    step = optimizer.step
    monkeypatch.setattr(optimizer, "step", lambda: (seen.append(optimizer.param_groups[0]["lr"]),
                                                    step()))
    train_one_epoch(model, [bright_squares(2)] * 3, optimizer, "cpu", epoch=1, warmup_iters=4,
                    progress=False)
    # iterations 3, 4, 5 of the run: the last warm-up step, then the full rate
    assert seen[0] == pytest.approx(0.01 * (0.001 * 0.25 + 0.75))
    assert seen[1:] == [0.01, 0.01]
    assert optimizer.param_groups[0]["lr"] == 0.01


def test_non_finite_loss_raises_a_named_error(monkeypatch):
    model = small_model()
    forward = model.forward

    def nan_forward(images, targets=None):
        losses = forward(images, targets)
        losses["loss_box_reg"] = losses["loss_box_reg"] * float("nan")
        return losses

    monkeypatch.setattr(model, "forward", nan_forward)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    weights = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(NonFiniteLossError, match="epoch 3, iteration 0.*loss_box_reg=nan") as e:
        train_one_epoch(model, [bright_squares(2)], optimizer, "cpu", epoch=3, progress=False)
    assert e.value.epoch == 3 and math.isnan(e.value.losses["loss"])
    assert all(torch.equal(a, b) for a, b in zip(weights, model.parameters(), strict=True))


def _bn_stats(model):
    return {k: v.clone() for k, v in model.state_dict().items()
            if "running_" in k or "num_batches_tracked" in k}


@pytest.mark.parametrize("start_in_train", [True, False])
def test_evaluate_loss_leaves_bn_statistics_and_modes_alone(start_in_train):
    model = bn_model()
    model.train(start_in_train)
    model.backbone.fpn.train(not start_in_train)  # a mixed state must come back as it was
    modes = {name: m.training for name, m in model.named_modules()}
    stats = _bn_stats(model)
    assert stats, "the model should have live BatchNorm layers"
    losses = evaluate_loss(model, [bright_squares(2)], "cpu")
    assert losses["loss"] > 0 and all(math.isfinite(v) for v in losses.values())
    assert {name: m.training for name, m in model.named_modules()} == modes
    for key, value in _bn_stats(model).items():
        assert torch.equal(value, stats[key]), key
    # the trap evaluate_loss avoids: a plain train-mode pass under no_grad moves the stats
    model.train()
    with torch.no_grad():
        model(*bright_squares(2))
    assert any(not torch.equal(v, stats[k]) for k, v in _bn_stats(model).items())


def test_predict_returns_cpu_predictions_in_the_documented_format():
    model = small_model()
    model.train()
    images, targets = bright_squares(3)
    loader = [(images[:2], targets[:2]), (images[2:], targets[2:])]
    preds, got_targets = predict_with_targets(model, loader, "cpu")
    assert len(preds) == 3 and len(got_targets) == 3
    assert torch.equal(got_targets[2]["boxes"], targets[2]["boxes"])
    for p in preds:
        assert set(p) == {"boxes", "scores", "labels"}
        assert p["boxes"].device.type == "cpu" and p["boxes"].dtype == torch.float32
        assert p["boxes"].shape == (len(p["scores"]), 4)
        assert p["labels"].dtype == torch.int64
    assert model.training  # the caller's mode is restored
    assert len(predict(model, images, "cpu")) == 3
    assert len(predict(model, images[0], "cpu")) == 1
    assert predict_with_targets(model, images, "cpu")[1] == []
    all_scores = torch.cat([p["scores"] for p in predict(model, images, "cpu")])
    some = torch.cat([p["scores"] for p in predict(model, images, "cpu", score_thresh=0.5)])
    assert (some >= 0.5).all() and len(some) == int((all_scores >= 0.5).sum())


def _setup(lr=0.01):
    model = small_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    return model, optimizer, scheduler


def test_fit_checkpoints_and_resumes_at_the_next_epoch(tmp_path, monkeypatch):
    data = [bright_squares(2, seed=1)] * 2
    val = [bright_squares(2, seed=2)]
    val_losses = iter([1.0, 0.5, 0.4])  # every epoch improves: best.pt is the last epoch
    real_val = engine.evaluate_loss
    monkeypatch.setattr(engine, "evaluate_loss",
                        lambda *a: {**real_val(*a), "loss": next(val_losses)})
    model, optimizer, scheduler = _setup()
    history = fit(model, data, val, optimizer, "cpu", num_epochs=2, scheduler=scheduler,
                  checkpoint_dir=tmp_path, progress=False)
    assert isinstance(history, pd.DataFrame) and list(history["epoch"]) == [1, 2]
    assert list(history["lr"]) == [0.01, 0.005]
    for col in ("train_loss", "train_loss_classifier", "val_loss", "val_loss_box_reg",
                "seconds"):
        assert history[col].notna().all(), col
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "progress.json"]

    model2, optimizer2, scheduler2 = _setup(lr=0.5)  # fresh objects, different state
    state = load_checkpoint(tmp_path / "best.pt", model2, optimizer2, scheduler2)
    assert state["epoch"] == 2 and len(state["history"]) == 2
    for (name, a), b in zip(model.state_dict().items(), model2.state_dict().values(),
                            strict=True):
        assert torch.equal(a, b), name
    assert scheduler2.state_dict() == scheduler.state_dict()
    assert optimizer2.param_groups[0]["lr"] == optimizer.param_groups[0]["lr"] == 0.0025
    momentum = optimizer.state_dict()["state"][0]["momentum_buffer"]
    assert torch.equal(optimizer2.state_dict()["state"][0]["momentum_buffer"], momentum)

    epochs_run = []
    real = engine.train_one_epoch
    monkeypatch.setattr(engine, "train_one_epoch",
                        lambda *a, **k: (epochs_run.append(a[4]), real(*a, **k))[1])
    model3, optimizer3, scheduler3 = _setup(lr=0.5)
    resumed = fit(model3, data, val, optimizer3, "cpu", num_epochs=3, scheduler=scheduler3,
                  checkpoint_dir=tmp_path, resume=True, progress=False)
    assert epochs_run == [2]  # 0-based: only the third epoch is trained
    assert list(resumed["epoch"]) == [1, 2, 3]
    assert resumed.iloc[:2].drop(columns="seconds").equals(history.drop(columns="seconds"))
    assert resumed["lr"].iloc[-1] == 0.0025 and scheduler3.last_epoch == 3
    assert load_checkpoint(tmp_path / "best.pt", small_model())["epoch"] == 3


def test_best_pt_is_written_only_when_the_loss_improves_and_resume_starts_there(
        tmp_path, monkeypatch):
    script = _Scripted([0.5, 0.9, 0.8, 0.4])
    monkeypatch.setattr(engine, "train_one_epoch", script.train)
    monkeypatch.setattr(engine, "evaluate_loss", script.val)
    writes = []
    real_save = engine.save_checkpoint
    monkeypatch.setattr(engine, "save_checkpoint",
                        lambda path, *a, **k: (writes.append(k["epoch"]),
                                               real_save(path, *a, **k))[1])
    model = nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    fit(model, [None], [None], optimizer, "cpu", num_epochs=2, checkpoint_dir=tmp_path,
        progress=False)  # a disconnect after epoch 2: the best epoch was 1
    assert writes == [1]
    again = fit(model, [None], [None], optimizer, "cpu", num_epochs=3,
                checkpoint_dir=tmp_path, resume=True, progress=False)
    assert script.epochs == 4  # epochs 2 and 3 trained after the resume, from epoch 1
    assert list(again["epoch"]) == [1, 2, 3] and list(again["val_loss"]) == [0.5, 0.8, 0.4]
    assert writes == [1, 3]
    fresh = tmp_path / "fresh"  # resume=True with nothing saved yet: a plain start
    assert len(fit(model, [None], None, optimizer, "cpu", num_epochs=1, checkpoint_dir=fresh,
                   resume=True, progress=False)) == 1


class _Scripted:
    """Stand-ins for the slow parts of fit: a scripted validation loss, a no-op epoch."""

    def __init__(self, val_losses):
        self.val_losses = list(val_losses)
        self.epochs = 0

    def train(self, model, loader, optimizer, *args, **kwargs):
        self.epochs += 1
        return {"loss": 1.0}

    def val(self, model, loader, device):
        return {"loss": self.val_losses.pop(0)}


def test_early_stopping_after_patience_epochs_without_improvement(monkeypatch, tmp_path):
    script = _Scripted([1.0, 0.8, 0.9, 0.85, 0.7, 0.6])
    monkeypatch.setattr(engine, "train_one_epoch", script.train)
    monkeypatch.setattr(engine, "evaluate_loss", script.val)
    model = nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=0)
    history = fit(model, [None], [None], optimizer, "cpu", num_epochs=10, scheduler=plateau,
                  checkpoint_dir=tmp_path, patience=2, progress=False)
    assert list(history["epoch"]) == [1, 2, 3, 4] and script.epochs == 4
    assert list(history["val_loss"]) == [1.0, 0.8, 0.9, 0.85]
    assert list(history["lr"]) == [1.0, 1.0, 1.0, 0.5]  # halved after each worse epoch
    assert load_checkpoint(tmp_path / "best.pt", model)["epoch"] == 2
    # resuming a run that already stopped early trains nothing more
    again = fit(model, [None], [None], optimizer, "cpu", num_epochs=10, scheduler=plateau,
                checkpoint_dir=tmp_path, patience=2, resume=True, progress=False)
    assert len(again) == 4 and script.epochs == 4


def test_a_score_picks_best_pt_and_stops_early_instead_of_the_loss(monkeypatch, tmp_path):
    # The loss falls every epoch; the score (say validation AP50) peaks at epoch 2, and a
    # NaN score (nothing to measure) is never an improvement.
    script = _Scripted([0.9, 0.8, 0.7, 0.6, 0.5])
    monkeypatch.setattr(engine, "train_one_epoch", script.train)
    monkeypatch.setattr(engine, "evaluate_loss", script.val)
    scores = iter([0.2, 0.5, 0.4, math.nan, 0.9])
    model = nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    history = fit(model, [None], [None], optimizer, "cpu", num_epochs=5, patience=2,
                  checkpoint_dir=tmp_path, progress=False, score_fn=lambda m: next(scores))
    assert list(history["epoch"]) == [1, 2, 3, 4] and script.epochs == 4
    assert list(history["val_score"][:3]) == [0.2, 0.5, 0.4]
    assert math.isnan(history["val_score"][3])
    state = load_checkpoint(tmp_path / "best.pt", model)
    assert (state["epoch"], state["monitor"], state["best"]) == (2, "val_score", 0.5)
    # a checkpoint chosen by the score is not resumed by a run that monitors the loss, and
    # the refusal leaves the model's weights alone
    with torch.no_grad():
        model.weight.fill_(7.0)
    with pytest.raises(ValueError, match=r"chosen by val_score.*by val_loss.*delete"):
        fit(model, [None], [None], optimizer, "cpu", num_epochs=5, checkpoint_dir=tmp_path,
            resume=True, progress=False)
    assert (model.weight == 7.0).all()


def test_fit_without_validation_monitors_the_training_loss(monkeypatch):
    script = _Scripted([])
    monkeypatch.setattr(engine, "train_one_epoch", script.train)
    model = nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    history = fit(model, [None], None, optimizer, "cpu", num_epochs=3, patience=1,
                  progress=False)
    assert list(history["epoch"]) == [1, 2]  # a flat training loss stops after one epoch
    assert "val_loss" not in history.columns
    with pytest.raises(ValueError, match="checkpoint_dir"):
        fit(model, [None], None, optimizer, "cpu", num_epochs=1, resume=True)


def test_load_checkpoint_names_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "nope.pt", nn.Linear(1, 1))
    model = nn.Linear(1, 1)
    engine.save_checkpoint(tmp_path / "m.pt", model)
    with pytest.raises(KeyError, match="no optimizer state"):
        load_checkpoint(tmp_path / "m.pt", model, torch.optim.SGD(model.parameters(), lr=1))
