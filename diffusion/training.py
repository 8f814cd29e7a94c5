"""One training loop for every model of the lab, standalone or inside a Ray Tune trial.

AdamW with linear warm-up and optional cosine decay, gradient clipping, an EMA of the
weights, bf16 autocast where the device supports it, a callback every N steps for metrics and
checkpoints, and exact resume: ``state_dict`` holds the model, EMA, optimiser, step and every
RNG, and loads with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from diffusion.config import ConfigError, TrainConfig
from diffusion.device import autocast, resolve_precision
from diffusion.ema import EMA

Batch = torch.Tensor | tuple[torch.Tensor, ...]
LossFn = Callable[[nn.Module, Batch, torch.Generator], torch.Tensor]
"""loss(model, batch, generator) -> scalar loss; draws its randomness from ``generator`` only.

The batch is one tensor, or a tuple (images, labels, ...) when the trainer was given a tuple."""

LR_DECAYS: tuple[str, ...] = ("constant", "cosine")


@dataclass(frozen=True)
class TrainProgress:
    """What a callback sees: position in the run and the mean loss since the last callback."""

    step: int
    images_seen: int
    loss: float
    lr: float
    elapsed_s: float
    images_per_s: float


Callback = Callable[["Trainer", TrainProgress], "bool | None"]
"""Called every ``every`` steps and at the end; returning True stops training."""


def validate_train_config(config: TrainConfig) -> TrainConfig:
    """Reject values the loop cannot run with, naming the accepted range."""
    checks = [
        (config.steps >= 1, f"steps must be a positive integer, got {config.steps}"),
        (config.batch_size >= 1, f"batch_size must be a positive integer, got {config.batch_size}"),
        (config.lr > 0, f"lr must be positive, got {config.lr}"),
        (config.warmup_steps >= 0, f"warmup_steps must be >= 0, got {config.warmup_steps}"),
        (config.lr_decay in LR_DECAYS, f"lr_decay {config.lr_decay!r} is not one of {list(LR_DECAYS)}"),
        (0 <= config.min_lr_ratio <= 1, f"min_lr_ratio must be in [0, 1], got {config.min_lr_ratio}"),
        (config.weight_decay >= 0, f"weight_decay must be >= 0, got {config.weight_decay}"),
        (config.grad_clip >= 0, f"grad_clip must be >= 0 (0 turns clipping off), got {config.grad_clip}"),
        (0 <= config.ema_decay < 1, f"ema_decay must be in [0, 1), got {config.ema_decay}"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    resolve_precision(config.precision, torch.device("cpu"))
    return config


def learning_rate(config: TrainConfig, step: int) -> float:
    """Linear warm-up to ``lr``, then constant or cosine decay to ``min_lr_ratio * lr`` at ``steps``."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    if config.lr_decay == "constant":
        return config.lr
    span = max(1, config.steps - config.warmup_steps)
    progress = min(1.0, (step - config.warmup_steps) / span)
    floor = config.min_lr_ratio
    return config.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


class Trainer:
    """Trains ``model`` on ``data`` held on the device, batch order fixed by the seed.

    ``data`` is an (N, ...) tensor, or a tuple of tensors of equal length N (images, labels).
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        data: Batch,
        config: TrainConfig,
        device: torch.device,
    ) -> None:
        self.config = validate_train_config(config)
        tensors = data if isinstance(data, tuple) else (data,)
        if len(tensors[0]) == 0:
            raise ConfigError("the training data set is empty")
        if any(len(t) != len(tensors[0]) for t in tensors):
            raise ConfigError(f"training tensors differ in length: {[len(t) for t in tensors]}")
        self.device = device
        self.precision = resolve_precision(config.precision, device)
        self.model = model.to(device).train()
        self.loss_fn = loss_fn
        self.tensors = tuple(t.to(device) for t in tensors)
        self.num_examples = len(tensors[0])
        # fused: one kernel for the whole update instead of a loop over parameters (measured in
        # the README's benchmark); CPU and CUDA support it, other devices take the loop
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay,
            fused=device.type in ("cpu", "cuda"),
        )
        self.ema = EMA(self.model, config.ema_decay)
        self.generator = torch.Generator(device=device).manual_seed(config.seed)
        self._global_rng = self._initial_global_rng(config.seed)
        self.step = 0
        self._epoch_order: tuple[int, torch.Tensor] | None = None

    @property
    def images_seen(self) -> int:
        """Training images consumed so far."""
        return self.step * self.config.batch_size

    def batch_indices(self, step: int) -> torch.Tensor:
        """Indices of the batch at ``step``: a seeded permutation per epoch, so resume needs no state."""
        n, size = self.num_examples, self.config.batch_size
        start = step * size
        indices = []
        while size > 0:
            epoch, offset = divmod(start, n)
            if self._epoch_order is None or self._epoch_order[0] != epoch:
                epoch_generator = torch.Generator().manual_seed(self.config.seed * 1_000_003 + epoch)
                self._epoch_order = (epoch, torch.randperm(n, generator=epoch_generator))
            take = min(size, n - offset)
            indices.append(self._epoch_order[1][offset : offset + take])
            start, size = start + take, size - take
        return torch.cat(indices).to(self.device, non_blocking=True)

    def _rng_devices(self) -> list[torch.device]:
        return [self.device] if self.device.type == "cuda" else []

    def _initial_global_rng(self, seed: int) -> dict[str, torch.Tensor]:
        with torch.random.fork_rng(devices=self._rng_devices()):
            torch.manual_seed(seed + 1)
            return self._capture_global_rng()

    def _capture_global_rng(self) -> dict[str, torch.Tensor]:
        state = {"cpu": torch.get_rng_state()}
        if self.device.type == "cuda":
            state["cuda"] = torch.cuda.get_rng_state(self.device)
        return state

    def train_step(self) -> torch.Tensor:
        """One optimiser step; returns the loss as a device tensor (no host sync).

        Layers that draw from torch's global RNG (dropout) see the trainer's own RNG state,
        swapped in for the step: the run repeats exactly and the caller's RNG is untouched.
        """
        with torch.random.fork_rng(devices=self._rng_devices()):
            torch.set_rng_state(self._global_rng["cpu"])
            if "cuda" in self._global_rng:
                torch.cuda.set_rng_state(self._global_rng["cuda"], self.device)
            loss = self._optimise()
            self._global_rng = self._capture_global_rng()
        return loss

    def _optimise(self) -> torch.Tensor:
        lr = learning_rate(self.config, self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        indices = self.batch_indices(self.step)
        batch = tuple(t[indices] for t in self.tensors)
        with autocast(self.device, self.precision):
            loss = self.loss_fn(self.model, batch if len(batch) > 1 else batch[0], self.generator)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.optimizer.step()
        self.ema.update(self.model)
        self.step += 1
        return loss.detach()

    def fit(self, until: int | None = None, callback: Callback | None = None, every: int = 100) -> TrainProgress:
        """Train up to step ``until`` (default ``config.steps``), calling ``callback`` every ``every`` steps."""
        until = self.config.steps if until is None else until
        if every < 1:
            raise ConfigError(f"callback interval must be a positive integer, got {every}")
        start_time, start_images = time.perf_counter(), self.images_seen
        window_loss, window_steps = torch.zeros((), device=self.device), 0
        progress = self._progress(float("nan"), start_time, start_images)
        while self.step < until:
            window_loss += self.train_step()
            window_steps += 1
            if self.step % every == 0 or self.step == until:
                progress = self._progress(window_loss.item() / window_steps, start_time, start_images)
                window_loss.zero_()
                window_steps = 0
                if callback is not None and callback(self, progress):
                    break
        return progress

    def _progress(self, loss: float, start_time: float, start_images: int) -> TrainProgress:
        elapsed = time.perf_counter() - start_time
        rate = (self.images_seen - start_images) / elapsed if elapsed > 0 else 0.0
        lr = learning_rate(self.config, max(0, self.step - 1))
        return TrainProgress(self.step, self.images_seen, loss, lr, elapsed, rate)

    def state_dict(self) -> dict[str, object]:
        """Everything needed for an exact resume; only tensors and plain types (weights_only-safe)."""
        state: dict[str, object] = {
            "step": self.step,
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "global_rng": dict(self._global_rng),
        }
        return state

    def load_state_dict(self, state: dict[str, object]) -> None:
        """Restore what ``state_dict`` returned; training then continues bit-for-bit."""
        self.step = int(state["step"])  # type: ignore[arg-type]
        self.model.load_state_dict(state["model"])  # type: ignore[arg-type]
        self.ema.load_state_dict(state["ema"])  # type: ignore[arg-type]
        self.optimizer.load_state_dict(state["optimizer"])  # type: ignore[arg-type]
        self.generator.set_state(state["generator"])  # type: ignore[arg-type]
        saved_rng = dict(state["global_rng"])  # type: ignore[call-overload]
        if self.device.type != "cuda":
            saved_rng.pop("cuda", None)
        elif "cuda" not in saved_rng:
            saved_rng["cuda"] = self._global_rng["cuda"]
        self._global_rng = saved_rng

    def save_state(self) -> bytes:
        """``state_dict`` serialised with ``torch.save`` (trial-internal resume state only)."""
        buffer = io.BytesIO()
        torch.save(self.state_dict(), buffer)
        return buffer.getvalue()

    def load_state(self, data: bytes) -> None:
        """Load bytes from ``save_state`` with ``weights_only=True``: no arbitrary unpickling."""
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        self.load_state_dict(state)
