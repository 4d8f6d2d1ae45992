"""The training loop (paper §IV): ``train(cfg, data_dir, out_dir)``.

One process, or one per GPU/CPU slot under ``torchrun`` (DDP; rank 0 logs and saves). Per
iteration: lr from the schedule, forward (AMP on CUDA), Eq. 6 loss, backward, gradient
clipping, AdamW step. Files in ``out_dir``:

- ``last.pth``: weights + training state (optimiser, AMP scaler, iteration, RNG), rewritten
  atomically every ``train.checkpoint_every`` iterations, at every epoch end, on Ctrl-C and at
  the end; ``resume=True`` continues from it at the same iteration, lr and data order. A Ctrl-C
  during the backbone warm-up (``train.crop_pretrain_steps``) saves it too, with the warm-up's
  own state, and ``resume=True`` continues the warm-up where it stopped;
- ``final.pth``: weights only, at the end (the file to evaluate, export and deploy);
- ``metrics.jsonl`` (+ ``tensorboard/`` when installed): loss terms, lr, speed.

A NaN/inf loss stops the run before it touches the weights, leaving ``last.pth`` as it was.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import sys
import threading
import time
from pathlib import Path

import torch

from csrinfer.model.checkpoint import load_weights, read_checkpoint, save_checkpoint
from csrinfer.config import Config, require_config
from csrinfer.data.coco import CocoInstanceDataset, find_split
from csrinfer.data.transforms import TrainTransform
from csrinfer.errors import ConfigError, DatasetError, TrainingError
from csrinfer.model import build_model
from csrinfer.train.distributed import (ResumableSampler, World, all_reduce_mean, barrier, init_distributed,
                                        shutdown, training_device)
from csrinfer.train.losses import solo_loss
from csrinfer.train.metrics_log import MetricsLog
from csrinfer.train.pretrain import object_crops, pretrain_backbone
from csrinfer.train.schedule import build_optimizer, lr_factor, milestone_iters, scaled_lr, set_lr
from csrinfer.train.targets import TrainCollate

log = logging.getLogger(__name__)

LOSS_KEYS = ("loss", "loss_cls", "loss_dice", "loss_focal")


def train(cfg: Config, data_dir: str | os.PathLike, out_dir: str | os.PathLike, max_minutes: float | None = None,
          max_iters: int | None = None, resume: bool | str | os.PathLike = False, device: str | None = None,
          progress: bool = True, fit_to_time: bool = False) -> Path:
    """Train ``cfg`` on the ``train`` split of a COCO-format folder; returns ``out_dir/final.pth``.

    Args:
        cfg: model + schedule (``cfg.train``); its class count must match the dataset's.
        data_dir: holds ``annotations/instances_train.json`` + ``train/`` (or COCO's *2017 names).
        out_dir: checkpoints and logs (created).
        max_minutes: stop (saving ``last.pth`` and ``final.pth``) after this much training time.
        max_iters: stop once this many iterations (in total, counting resumed ones) are done.
        resume: True to continue from ``out_dir/last.pth``, or the path of a ``last.pth``.
        device: "cpu", "cuda", "cuda:1"... (default: this process's GPU if any, else CPU).
        progress: show the progress bar (rank 0 only).
        fit_to_time: with ``max_minutes``, size the schedule to the time budget instead of
            ``train.epochs`` (as Ultralytics' ``time=``): the run's length is re-estimated from
            its measured speed as it goes, and the lr milestones stay at the same fractions of
            it (8/12 and 11/12 for the paper's schedule), so the lr steps happen even when the
            machine is slower than expected.

    A Ctrl-C (SIGINT) or SIGTERM saves ``last.pth`` after the current iteration (or warm-up step)
    and raises KeyboardInterrupt. A time budget may cut the backbone warm-up to a quarter of
    it: the log says so with the step counts, and checkpoints record them (``meta["warmup"]``).

    Example:
        >>> from csrinfer.config import load_config
        >>> from csrinfer.train import train
        >>> ckpt = train(load_config("models/csr_d2s_r18_small.yaml"), "data/shapes", "runs/shapes", max_minutes=20)
    """
    require_config(cfg)
    for name, limit in (("max_iters", max_iters), ("max_minutes", max_minutes)):
        if limit is not None and not limit > 0:  # 0 would write an untrained final.pth as if it had trained
            raise ConfigError(f"{name} must be above 0, got {limit!r}")
    if not resume:
        refuse_a_used_folder(Path(out_dir), Path(data_dir))
    dev = training_device(device)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    world = init_distributed(dev)
    try:
        trainer = Trainer(cfg, data_dir, out_dir, dev, world, max_iters)
        if resume:
            trainer.resume(Path(out_dir) / "last.pth" if resume is True else Path(resume))
        return trainer.run(max_minutes, progress, fit_to_time)
    finally:
        shutdown(world)


def refuse_a_used_folder(out_dir: Path, data_dir: Path) -> None:
    """A new run into a folder that holds one would replace its checkpoints and mix two runs in
    its metrics log; resuming or another folder is what the user meant. The dataset's own folder
    is refused too: checkpoints and logs do not belong among its annotations."""
    if out_dir.resolve() == data_dir.resolve():
        raise TrainingError(f"the output folder {out_dir} is the dataset folder; choose another one (--out)")
    found = [name for name in ("last.pth", "final.pth") if (out_dir / name).exists()]
    if found:
        raise TrainingError(f"{out_dir} already holds a training run ({found[0]}); resume it (--resume) or "
                            "choose another output folder (--out)")


class Trainer:
    """The state of one training process: data, model, optimiser, schedule position.

    Use :func:`train`; this class only splits its work into short steps.
    """

    def __init__(self, cfg: Config, data_dir, out_dir, device: torch.device, world: World,
                 max_iters: int | None = None):
        self.cfg, self.tc, self.out_dir, self.device, self.world = cfg, cfg.train, Path(out_dir), device, world
        tc = cfg.train
        self.dataset = _train_dataset(cfg, data_dir)
        torch.manual_seed(tc.seed)
        self.model = build_model(cfg).to(device)
        self.total_batch = tc.batch_size * world.world_size
        self.peak_lr = scaled_lr(tc.lr, self.total_batch, tc.base_batch_size)
        self.optimizer = build_optimizer(self.model, self.peak_lr, tc.weight_decay)
        self.autocast_dtype = autocast_dtype(device, tc.amp)
        # Loss scaling is for fp16's narrow range only; bf16 has fp32's.
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.autocast_dtype == torch.float16)
        self.sampler = ResumableSampler(self.dataset, world, shuffle=True, seed=tc.seed)
        self.iters_per_epoch = math.ceil(self.sampler.num_samples / tc.batch_size)
        self.total_iters = tc.epochs * self.iters_per_epoch
        self.max_iters = max_iters
        self.stop_at = min(self.total_iters, max_iters) if max_iters is not None else self.total_iters
        self.iteration = 0
        self.warmup: dict | None = None  # the backbone warm-up's progress (Trainer._pretrain_backbone)
        self.net = self.model
        if world.distributed:
            ids = [device.index] if device.type == "cuda" else None
            self.net = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        self.collate = TrainCollate(cfg.model.num_classes, cfg.model.num_grids, cfg.model.scale_ranges,
                                    tc.pos_scale, stride=self.model.stride, divisor=cfg.input.size_divisor)

    def resume(self, path: Path) -> None:
        """Continue from a ``last.pth``: weights, optimiser, AMP scaler, RNG and iteration."""
        payload = read_checkpoint(path)
        state = payload.get("train_state")
        if not state:
            raise TrainingError(f"{path} holds no training state (a final.pth?); resume from a last.pth")
        load_weights(self.model, payload["state_dict"], str(path))
        try:
            self.optimizer.load_state_dict(state["optimizer"])
        except (ValueError, KeyError) as e:
            raise TrainingError(f"the optimiser state in {path} does not fit this model ({e})") from None
        if self.scaler.is_enabled() and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"]["torch"])
        cuda_rng = state["rng"].get("cuda")
        if cuda_rng is not None and torch.cuda.is_available() and len(cuda_rng) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(list(cuda_rng))
        for key, value in (("total_batch_size", self.total_batch), ("dataset_size", len(self.dataset))):
            if state.get(key) != value:
                log.warning("resuming with %s %s instead of %s: the data order will differ from an uninterrupted "
                            "run", key, value, state.get(key))
        self.iteration = int(state["iteration"])
        self.warmup = state.get("warmup")
        if self.world.is_main:
            if self.iteration == 0 and self.warmup and not self.warmup["finished"]:
                log.info("resumed from %s in the backbone warm-up, after %d of its %d steps", path,
                         self.warmup["steps"], self.warmup["planned"])
            else:
                log.info("resumed from %s at iteration %d", path, self.iteration)

    def run(self, max_minutes: float | None = None, progress: bool = True, fit_to_time: bool = False) -> Path:
        """Train until ``stop_at`` (or the time budget); returns ``out_dir/final.pth``."""
        main = self.world.is_main
        self.started = (time.monotonic(), self.iteration)
        self.deadline = self.started[0] + 60.0 * max_minutes if max_minutes is not None else None
        self.fit_to_time = fit_to_time and self.deadline is not None
        if main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self._announce()
        self.stop = _StopFlag()
        if self.iteration == 0 and self.tc.crop_pretrain_steps > 0 and not (self.warmup and self.warmup["finished"]):
            with self.stop.installed():  # inside the time budget: it is part of the training
                self._pretrain_backbone(progress and main)
            if self._stop_requested_anywhere():
                if main:
                    path = self.save("last.pth")
                    print(f"interrupted during the backbone warm-up: saved {path} after {self.warmup['steps']} of "
                          f"{self.warmup['planned']} warm-up steps; continue with --resume", file=sys.stderr)
                raise KeyboardInterrupt
            self.stop = _StopFlag()
            self.started = (time.monotonic(), self.iteration)  # the speed estimate is the detector's
        self.metrics = MetricsLog(self.out_dir, enabled=main)
        self.bar = _progress_bar(self.stop_at, self.iteration, enabled=progress and main)
        self._reset_window()
        self.net.train()
        try:
            with self.stop.installed():
                while self.iteration < self.stop_at:
                    self._epoch()
        except KeyboardInterrupt:
            self.bar.close()
            if main and not self.stop.aborted:
                path = self.save("last.pth")
                print(f"interrupted: saved {path} at iteration {self.iteration}; continue with --resume",
                      file=sys.stderr)
            raise
        finally:
            self.bar.close()
            self.metrics.close()
        if main:
            self.save("last.pth")
            self.save("final.pth", with_state=False)
            log.info("finished at iteration %d of %d; weights in %s", self.iteration, self.total_iters,
                     self.out_dir / "final.pth")
        barrier(self.world)
        return self.out_dir / "final.pth"

    def _epoch(self) -> None:
        """The rest of the current epoch (all of it, unless resuming in its middle)."""
        tc = self.tc
        epoch, done = divmod(self.iteration, self.iters_per_epoch)
        self.sampler.set_epoch(epoch, start=done * tc.batch_size)
        self.dataset.set_epoch(epoch)
        self.bar.set_description(f"epoch {epoch + 1}" if self.fit_to_time else f"epoch {epoch + 1}/{tc.epochs}")
        loader = torch.utils.data.DataLoader(
            self.dataset, batch_size=tc.batch_size, sampler=self.sampler, num_workers=tc.num_workers,
            collate_fn=self.collate, pin_memory=self.device.type == "cuda",
            worker_init_fn=_ignore_interrupts if tc.num_workers else None)
        for batch in loader:
            stop_requested, out_of_time = self._step(batch)
            end_of_epoch = self.iteration % self.iters_per_epoch == 0
            if self.world.is_main and (self.iteration % tc.checkpoint_every == 0 or end_of_epoch):
                self.save("last.pth")
            if stop_requested:
                raise KeyboardInterrupt
            if out_of_time:
                if self.world.is_main:
                    log.info("time budget reached at iteration %d", self.iteration)
                self.stop_at = self.iteration
            if self.iteration >= self.stop_at or end_of_epoch:
                break

    def _step(self, batch) -> tuple[bool, bool]:
        """One iteration. Returns (a process asked to stop, a process ran out of time)."""
        tc = self.tc
        milestones = milestone_iters(tc.milestones, tc.epochs, self.total_iters)
        lr = self.peak_lr * lr_factor(self.iteration, milestones, tc.gamma, tc.warmup_iters, tc.warmup_ratio)
        set_lr(self.optimizer, lr)
        with torch.autocast(self.device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None):
            outputs = self.net(batch.images.to(self.device, non_blocking=True))
        losses = solo_loss(outputs, batch.targets, tc.loss_cls, tc.loss_dice, tc.loss_focal, tc.focal_alpha,
                           tc.focal_gamma)
        # One collective per step: loss terms for the log and every process's stop flags.
        values = torch.stack([losses[k].detach().float() for k in LOSS_KEYS]).cpu()
        flags = torch.tensor([float(self.stop.requested),
                              float(self.deadline is not None and time.monotonic() > self.deadline)])
        shared = all_reduce_mean(torch.cat([values, flags]).to(self.device), self.world).cpu()
        values, flags = shared[:len(LOSS_KEYS)], shared[len(LOSS_KEYS):]
        if not torch.isfinite(values).all():
            raise TrainingError(self._diverged(values, "loss"))
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(losses["loss"]).backward()
        grad_norm = _clip(self.model, self.optimizer, self.scaler, tc.grad_clip)
        if not self.scaler.is_enabled() and not math.isfinite(grad_norm):  # AMP skips such steps itself
            raise TrainingError(self._diverged(values, "gradient norm"))
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.iteration += 1
        self.bar.update(1)
        self._log(values, lr, grad_norm)
        return bool(flags[0] > 0), bool(flags[1] > 0)

    def _log(self, values: torch.Tensor, lr: float, grad_norm: float) -> None:
        self.window += values
        self.window_iters += 1
        if self.iteration % self.tc.log_every and self.iteration != self.stop_at:
            return
        seconds = time.monotonic() - self.window_start
        record = {"iter": self.iteration, "epoch": round(self.iteration / self.iters_per_epoch, 4), "lr": lr}
        record.update({k: round(float(v), 6) for k, v in zip(LOSS_KEYS, self.window / self.window_iters)})
        record.update(grad_norm=round(grad_norm, 4), time=round(time.time(), 3),
                      images_per_s=round(self.window_iters * self.total_batch / max(seconds, 1e-9), 3))
        self.bar.set_postfix_str(_postfix(record), refresh=False)
        self.metrics.write(record)
        self._reset_window()
        if self.fit_to_time:
            self._fit_to_time()

    def _pretrain_backbone(self, progress: bool) -> None:
        """``train.crop_pretrain_steps`` of backbone warm-up on object crops
        (:mod:`csrinfer.train.pretrain`), unless the backbone starts from ImageNet weights.
        Continues an interrupted warm-up (``self.warmup`` from a resumed ``last.pth``)."""
        if self.cfg.model.pretrained:
            log.info("the backbone starts from ImageNet weights; train.crop_pretrain_steps is not needed and skipped")
            return
        if not any(p.requires_grad for p in self.model.backbone.parameters()):
            log.info("the backbone is frozen (model.frozen_stages); train.crop_pretrain_steps skipped")
            return
        crops, labels = object_crops(self.dataset, seed=self.tc.seed)
        if not len(labels):
            log.warning("no object to crop in %s; the backbone starts from scratch", self.dataset.ann_file)
            return
        started = time.monotonic()
        configured = self.tc.crop_pretrain_steps
        # A short run gets a short warm-up: never more steps than training iterations, and at
        # most a quarter of the time budget (it is counted in the budget).
        planned = min(configured, self.stop_at)
        deadline = None if self.deadline is None else started + 0.25 * (self.deadline - started)
        earlier = (self.warmup or {}).get("state")
        stats = pretrain_backbone(self.model.backbone, crops, labels, self.cfg.model.num_classes,
                                  planned, self.model.mean, self.model.std, lr=self.peak_lr,
                                  weight_decay=self.tc.weight_decay, device=self.device,
                                  autocast_dtype=self.autocast_dtype, seed=self.tc.seed, deadline=deadline,
                                  progress=progress, state=earlier, should_stop=lambda: self.stop.requested)
        stopped = stats.get("stopped")
        finished = stopped != "requested"
        cut = "time budget" if stopped == "deadline" else "short run" if planned < configured else None
        self.warmup = {"configured": configured, "planned": planned, "steps": stats["steps"], "cut": cut,
                       "finished": finished}
        if not finished:
            self.warmup["state"] = stats.get("state")  # what --resume continues from
        if self.world.distributed and finished:  # every process did the same; rank 0's weights make sure of it
            for tensor in self.model.backbone.state_dict().values():
                torch.distributed.broadcast(tensor, src=0)
        if not self.world.is_main or not finished:
            return
        seconds = time.monotonic() - started
        log.info("backbone warm-up: %d of %d steps on %d object crops in %.0f s; crop accuracy %.2f at the end",
                 stats["steps"], configured, len(labels), seconds, stats.get("accuracy", float("nan")))
        if cut == "time budget":
            log.warning("the backbone warm-up was cut to %d of its %d steps: it may take a quarter of the time "
                        "budget (%.0f s) and the machine was slower than that (load average %.1f); the mask AP will "
                        "be lower than with the whole warm-up: give training more minutes or a less loaded machine",
                        stats["steps"], configured, seconds, os.getloadavg()[0])
        elif cut == "short run":
            log.info("the backbone warm-up was shortened to %d of %d steps: never more steps than the run's %d "
                     "iterations", planned, configured, self.stop_at)

    def _stop_requested_anywhere(self) -> bool:
        flag = torch.tensor([float(self.stop.requested)])
        return bool(all_reduce_mean(flag.to(self.device), self.world).cpu()[0] > 0)

    def _fit_to_time(self) -> None:
        """Re-estimate how many iterations the time budget holds, from this run's mean speed so far.

        Every process computes it from its own clock; rank 0's estimate is shared so that all
        stay on one schedule.
        """
        start, first = self.started
        now = time.monotonic()
        if self.iteration - first < 5:  # too few iterations to time
            return
        per_iter = (now - start) / (self.iteration - first)
        # Aim a little before the deadline, so a slower stretch near the end does not cut off the
        # last (lowest-lr) iterations.
        remaining = 0.95 * max(0.0, self.deadline - now)
        estimate = torch.tensor([self.iteration + remaining / per_iter], dtype=torch.float64)
        if self.world.distributed:
            estimate = estimate.to(self.device)
            torch.distributed.broadcast(estimate, src=0)
        self.total_iters = max(self.iteration + 1, int(estimate.item()))
        self.stop_at = min(self.total_iters, self.max_iters) if self.max_iters is not None else self.total_iters
        self.bar.total = self.stop_at

    def _reset_window(self) -> None:
        self.window, self.window_iters, self.window_start = torch.zeros(len(LOSS_KEYS)), 0, time.monotonic()

    def save(self, name: str, with_state: bool = True) -> Path:
        """Write ``out_dir/name`` atomically (weights, config, classes; + training state)."""
        meta = dict(iteration=self.iteration, epoch=self.iteration / self.iters_per_epoch,
                    total_iters=self.total_iters)
        if self.warmup is not None:
            meta["warmup"] = {k: v for k, v in self.warmup.items() if k != "state"}
        return save_checkpoint(self.out_dir / name, self.model, self.cfg, self._state() if with_state else None, meta)

    def _state(self) -> dict:
        """Everything a resumed run needs, as tensors and plain values (``torch.load(weights_only=True)``)."""
        rng = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.stack(torch.cuda.get_rng_state_all())
        return dict(iteration=self.iteration, epoch=self.iteration // self.iters_per_epoch,
                    iters_per_epoch=self.iters_per_epoch, total_iters=self.total_iters,
                    total_batch_size=self.total_batch,
                    dataset_size=len(self.dataset), optimizer=self.optimizer.state_dict(),
                    scaler=self.scaler.state_dict(), rng=rng, warmup=self.warmup)

    def _diverged(self, values: torch.Tensor, what: str) -> str:
        terms = ", ".join(f"{k}={v:.4g}" for k, v in zip(LOSS_KEYS, values.tolist()))
        last = self.out_dir / "last.pth"
        kept = f"the last good checkpoint {last} is untouched" if last.exists() else "no checkpoint was written yet"
        return (f"the {what} is not finite at iteration {self.iteration + 1} (epoch "
                f"{self.iteration // self.iters_per_epoch + 1}; {terms}); training stopped before updating the "
                f"weights and {kept}; lower train.lr or check the data")

    def _announce(self) -> None:
        s = self.dataset.stats
        skipped = {k: v for k, v in s["skipped"].items() if v}
        log.info("%s: %d images, %d instances, %d crowd regions%s", self.dataset.ann_file, s["images"],
                 s["instances"], s["crowd"], f"; skipped annotations: {skipped}" if skipped else "")
        where = f"{self.world.world_size} processes" if self.world.distributed else str(self.device)
        length = ("as many iterations as fit the time budget" if self.fit_to_time else
                  f"{self.total_iters} iterations")
        log.info("training %s: %s (%d per epoch), total batch %d, peak lr %.3g, on %s%s", self.cfg.name,
                 length, self.iters_per_epoch, self.total_batch, self.peak_lr, where,
                 f"; stopping at iteration {self.stop_at}" if self.stop_at < self.total_iters else "")


def autocast_dtype(device: torch.device, amp: bool) -> torch.dtype | None:
    """The mixed-precision dtype of training with ``train.amp``: fp16 on CUDA; bf16 on a CPU
    with native bf16 arithmetic (AVX512-BF16 or AMX: 1.7x faster training steps on the 2-core
    EPYC of the CPU benchmark); None (fp32) otherwise: without bf16 units there is nothing to gain."""
    if not amp:
        return None
    if device.type == "cuda":
        return torch.float16
    if device.type == "cpu" and _cpu_has_native_bf16():
        return torch.bfloat16
    return None


def _cpu_has_native_bf16() -> bool:
    cpu = torch.cpu
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private, hence looked up softly
    return any(getattr(cpu, name, lambda: False)() for name in checks)


def _train_dataset(cfg: Config, data_dir) -> CocoInstanceDataset:
    ann, images = find_split(data_dir, "train")
    tc = cfg.train
    transform = TrainTransform(tc.short_side_range, cfg.input.max_size, tc.flip, cfg.input.size_divisor)
    dataset = CocoInstanceDataset(ann, images, transform, seed=tc.seed)
    if len(dataset) == 0:
        raise DatasetError(f"{ann} lists no usable image")
    if len(dataset.class_names) != cfg.model.num_classes:
        raise ConfigError(
            f"the dataset has {len(dataset.class_names)} categories ({_names(dataset.class_names)}) but config "
            f"'{cfg.name}' has {cfg.model.num_classes} classes; set model.num_classes and classes in the config")
    if list(dataset.class_names) != list(cfg.classes):
        log.warning("the dataset's category names %s differ from the config's %s; the dataset's are used",
                    _names(dataset.class_names), _names(cfg.classes))
        cfg.classes = list(dataset.class_names)
    cfg.category_ids = list(dataset.category_ids)  # what predictions.json and to_coco write
    return dataset


def _names(names) -> str:
    names = list(names)
    return ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")


def _clip(model, optimizer, scaler, max_norm: float) -> float:
    scaler.unscale_(optimizer)
    params = [p for p in model.parameters() if p.grad is not None]
    if max_norm > 0:
        return float(torch.nn.utils.clip_grad_norm_(params, max_norm))
    return float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params]))) if params else 0.0


def _postfix(record: dict) -> str:
    return (f"loss {record['loss']:.3f} (cls {record['loss_cls']:.3f} dice {record['loss_dice']:.3f} "
            f"focal {record['loss_focal']:.4f}) lr {record['lr']:.2e}")


def _progress_bar(total: int, initial: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, unit="it", dynamic_ncols=True, smoothing=0.05)


def _ignore_interrupts(_worker_id: int) -> None:
    """DataLoader workers leave Ctrl-C to the main process, which saves a checkpoint and stops them."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class _StopFlag:
    """The first SIGINT/SIGTERM asks the loop to save and stop after the current iteration; a
    second SIGINT interrupts at once."""

    def __init__(self):
        self.requested = self.aborted = False

    def _handle(self, signum, frame):
        if self.requested and signum == signal.SIGINT:
            self.aborted = True  # mid-iteration: the state is not worth saving
            raise KeyboardInterrupt
        self.requested = True
        print("\nstopping after this iteration (saving a checkpoint); press Ctrl-C again to abort at once",
              file=sys.stderr)

    @contextlib.contextmanager
    def installed(self):
        if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
            yield
            return
        previous = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

