"""One training loop for every model of the lab, standalone or inside a Ray Tune trial.

AdamW with linear warm-up and optional cosine decay, gradient clipping, an EMA of the
weights, bf16 autocast where the device supports it, a callback every N steps for metrics and
checkpoints, and exact resume: ``state_dict`` holds the model, EMA, optimiser, step and every
RNG, and loads with ``torch.load(..., weights_only=True)``.

Resume state is portable across devices: a state saved on CUDA loads on the CPU and the other
way round. Weights and optimiser state move to the trainer's device; a random generator cannot
(CUDA and CPU generators have different state layouts), so on a change of device type it is
reseeded from the run's seed and the saved step, and the log says so. On the same device type
the resume is bit-exact.

The step path does no host work: the data and each epoch's batch order live on the device, and
the trainer's own RNG state is swapped in once per callback window, not once per step. On CUDA
the network's forward and backward are captured as CUDA graphs by default (``TrainConfig.compile``).
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from diffusion.core.config import CompileMode, ConfigError, TrainConfig
from diffusion.core.device import autocast, resolve_precision
from diffusion.core.ema import EMA

log = logging.getLogger(__name__)

Batch = torch.Tensor | tuple[torch.Tensor, ...]
LossFn = Callable[[nn.Module, Batch, torch.Generator], torch.Tensor]
"""loss(model, batch, generator) -> scalar loss; draws its randomness from ``generator`` only.

The batch is one tensor, or a tuple (images, labels, ...) when the trainer was given a tuple."""


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
        self.config = config
        tensors = data if isinstance(data, tuple) else (data,)
        if len(tensors[0]) == 0:
            raise ConfigError("the training data set is empty")
        if any(len(t) != len(tensors[0]) for t in tensors):
            raise ConfigError(f"training tensors differ in length: {[len(t) for t in tensors]}")
        self.device = device
        self.precision = resolve_precision(config.precision, device)
        self.model = model.to(device).train()
        self.network = accelerated_network(self.model, config.compile, device, self.precision)
        self._compiled_steps = 0
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

    def _epoch_permutation(self, epoch: int) -> torch.Tensor:
        """The order of ``epoch``, drawn once per epoch on the CPU (the same on every device), kept on the device."""
        if self._epoch_order is None or self._epoch_order[0] != epoch:
            epoch_generator = torch.Generator().manual_seed(self.config.seed * 1_000_003 + epoch)
            order = torch.randperm(self.num_examples, generator=epoch_generator).to(self.device)
            self._epoch_order = (epoch, order)
        return self._epoch_order[1]

    def batch_indices(self, step: int) -> torch.Tensor:
        """Indices of the batch at ``step``, on the device: a seeded permutation per epoch, so resume needs no state."""
        n, size = self.num_examples, self.config.batch_size
        start = step * size
        indices = []
        while size > 0:
            epoch, offset = divmod(start, n)
            take = min(size, n - offset)
            indices.append(self._epoch_permutation(epoch)[offset : offset + take])
            start, size = start + take, size - take
        return indices[0] if len(indices) == 1 else torch.cat(indices)

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

    @contextlib.contextmanager
    def _own_rng(self) -> Iterator[None]:
        """Layers that draw from torch's global RNG (dropout) see the trainer's own RNG state inside.

        The run repeats exactly and the caller's RNG is untouched. Entered once per callback
        window (not per step): the swap syncs the device.
        """
        with torch.random.fork_rng(devices=self._rng_devices()):
            torch.set_rng_state(self._global_rng["cpu"])
            if "cuda" in self._global_rng:
                torch.cuda.set_rng_state(self._global_rng["cuda"], self.device)
            try:
                yield
            finally:
                self._global_rng = self._capture_global_rng()

    def train_step(self) -> torch.Tensor:
        """One optimiser step; returns the loss as a device tensor (no host sync)."""
        with self._own_rng():
            return self._optimise()

    def _optimise(self) -> torch.Tensor:
        lr = learning_rate(self.config, self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        indices = self.batch_indices(self.step)
        batch = tuple(t[indices] for t in self.tensors)
        try:
            loss = self._forward_backward(batch if len(batch) > 1 else batch[0])
        except Exception as error:  # noqa: BLE001 - a compiler failure of any kind falls back to eager once
            if self.network is self.model or self._compiled_steps > 0:
                raise
            log.warning("%s of the network failed (%s: %s); training eagerly instead", self.config.compile,
                        type(error).__name__, str(error).splitlines()[0] if str(error) else "")
            self.network = self.model
            loss = self._forward_backward(batch if len(batch) > 1 else batch[0])
        if self.network is not self.model:
            self._compiled_steps += 1
        if self.config.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.optimizer.step()
        self.ema.update(self.model)
        self.step += 1
        return loss.detach()

    def _forward_backward(self, batch: Batch) -> torch.Tensor:
        """The loss of ``batch`` and its gradients (the optimiser step is the caller's)."""
        self.optimizer.zero_grad(set_to_none=True)
        with autocast(self.device, self.precision):
            loss = self.loss_fn(self.network, batch, self.generator)
        loss.backward()
        return loss

    def fit(self, until: int | None = None, callback: Callback | None = None, every: int = 100) -> TrainProgress:
        """Train up to step ``until`` (default ``config.steps``), calling ``callback`` every ``every`` steps."""
        until = self.config.steps if until is None else until
        if every < 1:
            raise ConfigError(f"callback interval must be a positive integer, got {every}")
        start_time, start_images = time.perf_counter(), self.images_seen
        progress = self._progress(float("nan"), start_time, start_images)
        while self.step < until:
            window_end = min(until, (self.step // every + 1) * every)
            window_steps = window_end - self.step
            window_loss = torch.zeros((), device=self.device)
            with self._own_rng():
                while self.step < window_end:
                    window_loss += self._optimise()
            progress = self._progress(window_loss.item() / window_steps, start_time, start_images)
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
        return {
            "step": self.step,
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "generator_device": self.device.type,
            "global_rng": dict(self._global_rng),
        }

    def load_state_dict(self, state: dict[str, object]) -> None:
        """Restore what ``state_dict`` returned, saved on any device.

        On the same device type training continues bit-for-bit. From another device type the
        generators are reseeded from (seed, step): the run goes on, with other random draws.
        """
        self.step = int(state["step"])  # type: ignore[arg-type]
        self.model.load_state_dict(state["model"])  # type: ignore[arg-type]
        self.ema.load_state_dict(state["ema"])  # type: ignore[arg-type]
        self.optimizer.load_state_dict(state["optimizer"])  # type: ignore[arg-type]
        generator_state = state["generator"]
        assert isinstance(generator_state, torch.Tensor)
        saved_on = str(state.get("generator_device") or generator_device_type(generator_state))
        saved_rng = dict(state["global_rng"])  # type: ignore[call-overload]
        if saved_on == self.device.type:
            self.generator.set_state(generator_state)
        else:
            log.warning("resume state saved on %s, loading on %s: the random generators are reseeded from "
                        "seed %d and step %d (the run goes on; its random draws differ from an uninterrupted run)",
                        saved_on, self.device, self.config.seed, self.step)
            self.generator.manual_seed(reseed(self.config.seed, self.step))
            saved_rng = self._initial_global_rng(reseed(self.config.seed, self.step) + 1)
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


@dataclass
class TrainingJob:
    """A model's run config and the trainer that fits it (a denoiser's or an embedding's)."""

    run: Any
    trainer: Trainer

    @property
    def ema_model(self) -> nn.Module:
        """The EMA weights: what gets sampled, evaluated and exported."""
        return self.trainer.ema.model


CPU_GENERATOR_STATE_BYTES = 5056
"""A CPU (Mersenne Twister) generator's state; a CUDA (Philox) one is 16 bytes: seed and offset."""


def generator_device_type(state: torch.Tensor) -> str:
    """``cpu`` or ``cuda``, read from a generator state's size (for states saved without the device)."""
    return "cpu" if state.numel() == CPU_GENERATOR_STATE_BYTES else "cuda"


def reseed(seed: int, step: int) -> int:
    """The seed a resumed run takes on a new device type: a function of the run's seed and the step."""
    return (seed * 1_000_003 + step * 7_919 + 1) % (2**63)


def accelerated_network(model: nn.Module, mode: CompileMode, device: torch.device, precision: str) -> nn.Module | GraphedNetwork:
    """``model`` as the training step calls it: eager, compiled, or captured as CUDA graphs (see ``CompileMode``).

    Whatever wraps it shares the parameters; state dicts, EMA and exports use ``model``.
    """
    if mode == "auto":
        mode = "cuda_graphs" if device.type == "cuda" else "off"
    if mode == "cuda_graphs" and device.type != "cuda":
        raise ConfigError(f"compile 'cuda_graphs' needs a CUDA device, this run is on {device}; use auto, torch_compile or off")
    if mode == "torch_compile":
        return torch.compile(model, dynamic=False)
    if mode == "cuda_graphs":
        return GraphedNetwork(model, resolve_precision(precision, device) == "bf16")
    return model


class GraphedNetwork:
    """The network's forward and backward captured as CUDA graphs at the first call, replayed after.

    ``torch.cuda.make_graphed_callables`` records one launch for each pass, so the step costs a
    few launches instead of hundreds. Shapes must stay fixed (the trainer's batches do); under
    bf16 autocast the capture runs with autocast's cache off, as the capture requires. Other
    attributes (a VAE's ``encode``) reach the eager model.
    """

    def __init__(self, model: nn.Module, bf16: bool) -> None:
        self.model = model
        self.bf16 = bf16
        self.graphed: Callable[..., torch.Tensor] | None = None

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        if self.graphed is None:
            samples = tuple(x.detach().clone() for x in inputs)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.bf16, cache_enabled=False):
                self.graphed = torch.cuda.make_graphed_callables(self.model, samples, allow_unused_input=True)
        return self.graphed(*inputs)

    def __getattr__(self, name: str) -> object:
        if name == "model":  # not set yet (copy, unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.model, name)
