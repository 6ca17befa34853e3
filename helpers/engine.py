"""The training loop: one epoch, a validation loss, predictions, and ``fit`` around them.

Small functions in the spirit of torchvision's ``references/detection/engine.py``; they run
unchanged on a GPU (Colab) or a CPU. Conventions:

* A loader yields ``(images, targets)``: a list of float ``[3,H,W]`` tensors in [0,1] and a
  list of target dicts (``helpers.data.collate``).
* Losses are torchvision's four (``loss_classifier``, ``loss_box_reg``, ``loss_objectness``,
  ``loss_rpn_box_reg``) and their sum ``loss``.
* ``fit`` keeps a history (one row per epoch: ``epoch`` counted from 1, ``train_loss`` and
  its components prefixed ``train_``, ``val_loss`` likewise, ``val_score`` when a score is
  given, ``lr``, ``seconds``). It writes one checkpoint, ``best.pt``, only when the
  monitored number improves (the validation loss, or a score such as the validation AP50;
  on Google Drive every write counts), and a few-KB ``progress.json`` every epoch, so a
  run cut off by a disconnect resumes from its best epoch.

Data-parallel training (``torchrun``) would wrap the model in DistributedDataParallel and
give each loader a DistributedSampler; these functions already unwrap ``model.module`` for
checkpoints, call ``sampler.set_epoch`` and write files from the main process only.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

__all__ = ["evaluate_loss", "fit", "load_checkpoint", "NonFiniteLossError", "predict",
           "predict_with_targets", "save_checkpoint", "train_one_epoch"]

# Layers whose train mode changes what they compute or store: BatchNorm updates its running
# statistics, dropout drops. GroupNorm, LayerNorm and FrozenBatchNorm2d behave the same.
_MODE_SENSITIVE = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm,
                   nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d,
                   nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite (too high a learning rate, bad boxes, ...)."""

    def __init__(self, epoch: int, iteration: int, losses: Mapping[str, float]) -> None:
        parts = ", ".join(f"{k}={v:.4g}" for k, v in losses.items())
        super().__init__(f"loss is not finite at epoch {epoch}, iteration {iteration}: {parts}. "
                         "Lower the learning rate, add warm-up, or check the target boxes.")
        self.epoch, self.iteration, self.losses = epoch, iteration, dict(losses)


def _is_main_process() -> bool:
    dist = torch.distributed
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def _unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model)  # DataParallel / DistributedDataParallel


def _to_device(images, targets, device) -> tuple[list[torch.Tensor], list[dict]]:
    """Move a batch of images and target dicts to ``device``."""
    images = [img.to(device, non_blocking=True) for img in images]
    targets = [{k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v
                for k, v in t.items()} for t in targets]
    return images, targets


def _warmup_factor(step: int, warmup_iters: int, start: float = 0.001) -> float:
    """Linear ramp of the learning rate from ``start`` x to 1 x over ``warmup_iters`` steps."""
    if step >= warmup_iters:
        return 1.0
    alpha = step / warmup_iters
    return start * (1 - alpha) + alpha


def _means(rows: list[dict[str, float]]) -> dict[str, float]:
    return {k: sum(r[k] for r in rows) / len(rows) for k in rows[0]} if rows else {}


@contextmanager
def _modes(model: nn.Module, train: bool):
    """Put the model in train (for losses) or eval mode, with BatchNorm and dropout in eval
    mode either way; give every module its own previous mode back afterwards."""
    saved = {m: m.training for m in model.modules()}
    model.train(train)
    for m in model.modules():
        if isinstance(m, _MODE_SENSITIVE):
            m.eval()
    try:
        yield model
    finally:
        for m, mode in saved.items():
            m.train(mode)


def train_one_epoch(
    model: nn.Module,
    loader: Iterable,
    optimizer: torch.optim.Optimizer,
    device: torch.device | str,
    epoch: int = 0,
    warmup_iters: int = 0,
    scaler: torch.amp.GradScaler | None = None,
    progress: bool = True,
) -> dict[str, float]:
    """Train one pass over ``loader``; return the mean of each loss component and ``loss``.

    ``epoch`` counts from 0. Warm-up scales the learning rate linearly up over the first
    ``warmup_iters`` iterations of the whole run (epoch x len(loader) + i), on top of any
    scheduler. A ``scaler`` turns on mixed precision, on CUDA only.
    """
    device = torch.device(device)
    model.train()
    sampler = getattr(loader, "sampler", None)
    if hasattr(sampler, "set_epoch"):  # DistributedSampler reshuffles per epoch
        sampler.set_epoch(epoch)
    amp = scaler is not None and device.type == "cuda"
    rows: list[dict[str, float]] = []
    start = epoch * len(loader) if warmup_iters else 0
    bar = tqdm(loader, desc=f"epoch {epoch + 1}", leave=False, disable=not progress)
    for i, (images, targets) in enumerate(bar):
        images, targets = _to_device(images, targets, device)
        with torch.autocast(device.type, enabled=amp):
            loss_dict = model(images, targets)
            loss = sum(loss_dict.values())
        values = {k: v.item() for k, v in loss_dict.items()}
        values["loss"] = loss.item()
        if not math.isfinite(values["loss"]):
            raise NonFiniteLossError(epoch, i, values)
        factor = _warmup_factor(start + i, warmup_iters)
        saved = [group["lr"] for group in optimizer.param_groups]
        for group in optimizer.param_groups:
            group["lr"] *= factor
        optimizer.zero_grad(set_to_none=True)
        if amp:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        for group, lr in zip(optimizer.param_groups, saved, strict=True):
            group["lr"] = lr  # the scheduler owns the learning rate; warm-up only borrows it
        rows.append(values)
        bar.set_postfix(loss=f"{sum(r['loss'] for r in rows) / len(rows):.3f}")
    return _means(rows)


@torch.no_grad()
def evaluate_loss(model: nn.Module, loader: Iterable, device: torch.device | str
                  ) -> dict[str, float]:
    """Mean detection losses on a validation loader, changing no weights or statistics.

    torchvision's detectors return losses only in train mode, so the pass runs in train
    mode, but with BatchNorm and dropout layers in eval mode: otherwise BatchNorm would
    quietly update its running statistics with validation images. Every module's mode is
    restored afterwards. (The RPN and RoI heads still sample proposals at random in train
    mode, so the value varies a little from call to call.)
    """
    rows = []
    with _modes(model, train=True):
        for images, targets in loader:
            values = {k: v.item() for k, v in model(*_to_device(images, targets, device)).items()}
            rows.append({**values, "loss": sum(values.values())})
    return _means(rows)


def _batches(data, batch_size: int) -> Iterable[tuple[list, list | None]]:
    """Yield (images, targets or None) from a loader, a list of images or one image."""
    if isinstance(data, torch.Tensor):
        data = [data] if data.dim() == 3 else list(data)
    if isinstance(data, (list, tuple)) and all(isinstance(x, torch.Tensor) for x in data):
        data = [data[k:k + batch_size] for k in range(0, len(data), batch_size)]
    for batch in data:
        if isinstance(batch, torch.Tensor):  # one image, or a stacked [B,3,H,W] batch
            batch = [batch] if batch.dim() == 3 else list(batch)
        if len(batch) == 2 and not isinstance(batch[0], torch.Tensor):
            yield list(batch[0]), list(batch[1])  # (images, targets), as collate gives them
        else:
            yield list(batch), None


def _cpu(d: Mapping) -> dict:
    return {k: v.detach().cpu() if isinstance(v, torch.Tensor) else v for k, v in d.items()}


@torch.no_grad()
def predict_with_targets(
    model: nn.Module, data, device: torch.device | str, score_thresh: float = 0.0,
    batch_size: int = 8,
) -> tuple[list[dict], list[dict]]:
    """Predictions (and the loader's targets, if any) for every image, on the CPU.

    ``data`` is a loader of ``(images, targets)`` batches, a loader of image batches, a
    list of ``[3,H,W]`` tensors or a single one. Each prediction is a dict with ``boxes``
    float32 ``[N,4]`` (xyxy pixels), ``scores`` float32 ``[N]`` and ``labels`` int64 ``[N]``,
    keeping boxes with score >= ``score_thresh``. The targets list is empty when ``data``
    carries none. The model's train/eval modes are restored afterwards.
    """
    preds, targets = [], []
    with _modes(model, train=False):
        for images, batch_targets in _batches(data, batch_size):
            for out in model([img.to(device) for img in images]):
                keep = out["scores"] >= score_thresh
                preds.append({k: v[keep].detach().cpu() for k, v in out.items()})
            targets += [_cpu(t) for t in batch_targets or []]
    return preds, targets


def predict(model: nn.Module, data, device: torch.device | str, score_thresh: float = 0.0,
            batch_size: int = 8) -> list[dict]:
    """Predictions for every image of ``data``, on the CPU (see ``predict_with_targets``)."""
    return predict_with_targets(model, data, device, score_thresh, batch_size)[0]


# ------------------------------------------------------------------ checkpoints and fit


def save_checkpoint(path: str | Path, model: nn.Module, optimizer=None, scheduler=None,
                    **extra) -> Path:
    """Save model, optimizer and scheduler state (plus ``extra`` entries) to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"model": _unwrap(model).state_dict(), **extra}
    if optimizer is not None:
        state["optimizer"] = optimizer.state_dict()
    if scheduler is not None:
        state["scheduler"] = scheduler.state_dict()
    _atomic_write(path, lambda tmp: torch.save(state, tmp))
    return path


def _atomic_write(path: Path, write) -> None:
    """``write(tmp)`` beside ``path``, then rename: a run killed mid-save (a Colab
    disconnect) leaves the old file whole."""
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    tmp.replace(path)


def load_checkpoint(path: str | Path, model: nn.Module, optimizer=None, scheduler=None,
                    map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint into ``model`` (and optimizer/scheduler when given); return it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; expected a file written by fit()")
    state = torch.load(path, map_location=map_location, weights_only=True)
    _unwrap(model).load_state_dict(state["model"])
    for name, obj in (("optimizer", optimizer), ("scheduler", scheduler)):
        if obj is not None:
            if name not in state:
                raise KeyError(f"{path} holds no {name} state; it has {sorted(state)}")
            obj.load_state_dict(state[name])
    return state


def _step_scheduler(scheduler, monitor: float) -> None:
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        scheduler.step(monitor)  # steps on the validation loss
    elif scheduler is not None:
        scheduler.step()  # StepLR and friends step once per epoch


def _write_progress(path: Path, **progress) -> None:
    """The run's few-KB log (epochs done, history, early-stopping state), written atomically."""
    _atomic_write(path, lambda tmp: tmp.write_text(json.dumps(progress)))


def _resume(path: Path, ckpt_dir: Path | None, model, optimizer, scheduler, scaler,
            num_epochs: int, patience: int | None, monitor: str, progress: bool):
    """(history, next epoch, best value, bad epochs, finished) from ``best.pt`` and the log."""
    # Checked before anything is loaded: a refused resume leaves the model as it was.
    written = torch.load(path, map_location="cpu", weights_only=True, mmap=True).get("monitor")
    if written != monitor and (written is not None or monitor == "val_score"):  # None: older
        raise ValueError(f"{path} was chosen by {written or 'the loss'}, but this run picks its "
                         f"best epoch by {monitor}; delete {path.parent} to start afresh, "
                         "or pass the same score_fn as the run that wrote it")
    state = load_checkpoint(path, model, optimizer, scheduler)
    if scaler is not None and "scaler" in state:
        scaler.load_state_dict(state["scaler"])
    history, start = list(state["history"]), int(state["epoch"])
    best = float(state["best"] if "best" in state else state["best_loss"])  # older files
    log = ckpt_dir / "progress.json" if ckpt_dir is not None else None
    done = json.loads(log.read_text()) if log is not None and log.is_file() else None
    if done and (done["epoch"] >= num_epochs
                 or (patience is not None and done["bad_epochs"] >= patience)):
        if progress:
            print(f"{path}: this run had finished after epoch {done['epoch']}; the model "
                  f"holds its best epoch ({start}, {monitor} {best:.4f}); nothing to train")
        return done["history"], done["epoch"], best, done["bad_epochs"], True
    if progress:
        again = f"; epochs {start + 1}-{done['epoch']} are trained again" if (
            done and done["epoch"] > start) else ""
        print(f"resumed from {path}: best epoch {start}, {monitor} {best:.4f}{again}")
    return history, start, best, 0, False


def fit(
    model: nn.Module,
    train_loader: Iterable,
    val_loader: Iterable | None,
    optimizer: torch.optim.Optimizer,
    device: torch.device | str,
    num_epochs: int,
    scheduler=None,
    checkpoint_dir: str | Path | None = None,
    patience: int | None = None,
    warmup_iters: int = 0,
    resume: bool | str | Path = False,
    progress: bool = True,
    amp: bool = True,
    score_fn: Callable[[nn.Module], float] | None = None,
) -> pd.DataFrame:
    """Train for ``num_epochs`` epochs; return the history, one row per epoch.

    The validation loss (the training loss without ``val_loader``) picks ``best.pt`` and
    drives early stopping: training stops once ``patience`` epochs in a row have not
    improved it. With ``score_fn``, the score does both instead: ``score_fn(model)`` is
    called after each epoch and higher is better (for example the validation AP50, as
    torchvision's detection references evaluate COCO mAP after every epoch); a NaN score
    never counts as an improvement. A ``ReduceLROnPlateau`` scheduler steps on the
    validation loss either way. ``best.pt`` (model, optimizer, scheduler, history, and
    which number picked it) is written only when that number improves; ``progress.json``
    records every epoch. ``resume=True`` continues from
    ``checkpoint_dir/best.pt`` when it exists (else trains from the start; a path may be
    given instead): from the best epoch, so the epochs after it are trained again, unless
    the log says the run had finished (all epochs, or stopped early), in which case the
    model gets the best epoch's weights and nothing is trained. Mixed precision (``amp``)
    is used on CUDA only.
    """
    device = torch.device(device)
    model.to(device)
    scaler = torch.amp.GradScaler("cuda") if amp and device.type == "cuda" else None
    ckpt_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
    history: list[dict] = []
    monitor = "val_score" if score_fn is not None else (
        "val_loss" if val_loader is not None else "train_loss")
    start, bad = 0, 0
    best = -math.inf if score_fn is not None else math.inf
    if resume:
        if resume is True and ckpt_dir is None:
            raise ValueError("resume=True needs checkpoint_dir (or pass the checkpoint path)")
        path = ckpt_dir / "best.pt" if resume is True else Path(resume)
        if path.is_file() or resume is not True:
            history, start, best, bad, finished = _resume(
                path, ckpt_dir, model, optimizer, scheduler, scaler, num_epochs, patience,
                monitor, progress)
            if finished:
                return pd.DataFrame(history)
        elif progress:
            print(f"no checkpoint in {ckpt_dir} yet: training from the start")
    for epoch in range(start, num_epochs):
        if patience is not None and bad >= patience:
            break
        t0 = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        train = train_one_epoch(model, train_loader, optimizer, device, epoch, warmup_iters,
                                scaler, progress)
        val = evaluate_loss(model, val_loader, device) if val_loader is not None else {}
        loss = val.get("loss", train["loss"])
        _step_scheduler(scheduler, loss)
        if score_fn is not None:
            val["score"] = float(score_fn(model))
            improved = val["score"] > best  # False for NaN
        else:
            improved = loss < best
        best, bad = (val.get("score", loss), 0) if improved else (best, bad + 1)
        history.append({"epoch": epoch + 1, **{f"train_{k}": v for k, v in train.items()},
                        **{f"val_{k}": v for k, v in val.items()}, "lr": lr,
                        "seconds": time.perf_counter() - t0})
        if ckpt_dir is not None and _is_main_process():
            extra = {"epoch": epoch + 1, "history": history, "monitor": monitor, "best": best}
            if scaler is not None:
                extra["scaler"] = scaler.state_dict()
            if improved:
                save_checkpoint(ckpt_dir / "best.pt", model, optimizer, scheduler, **extra)
            _write_progress(ckpt_dir / "progress.json", epoch=epoch + 1, history=history,
                            monitor=monitor, best=best, bad_epochs=bad)
        if progress:
            val_text = f", val loss {val['loss']:.4f}" if "loss" in val else ""
            val_text += f", val score {val['score']:.4f}" if "score" in val else ""
            print(f"epoch {epoch + 1}/{num_epochs}: train loss {train['loss']:.4f}{val_text}"
                  f"{' (best)' if improved else ''}, lr {lr:.2g}, "
                  f"{history[-1]['seconds']:.1f} s")
        if patience is not None and bad >= patience and progress:
            print(f"early stop: no improvement for {patience} epoch(s)")
    if progress and ckpt_dir is not None and (ckpt_dir / "best.pt").is_file():
        size = (ckpt_dir / "best.pt").stat().st_size / 1e6
        print(f"{ckpt_dir / 'best.pt'}: {size:.0f} MB (weights, optimizer and scheduler: "
              "what resuming needs)")
    return pd.DataFrame(history)
