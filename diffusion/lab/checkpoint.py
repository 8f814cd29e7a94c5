"""Model files that leave a training run: weights in safetensors plus a JSON config.

Loading never unpickles. A pickle or zip (``torch.save``) placed where weights are expected is
refused by its first bytes, and a truncated or altered file fails its SHA-256 check; both
errors name the file.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as safetensors_load
from safetensors.torch import save as safetensors_save
from torch import nn

from diffusion.core.config import from_dict, to_dict
from diffusion.core.models import parameter_count
from diffusion.lab.kinds import STORED_KINDS
from diffusion.lab.store import CheckpointError

FORMAT = "diffusion-lab/model"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class ModelCard:
    """The JSON next to the weights: what the model is, how to rebuild it, what it scored."""

    kind: str
    config: dict[str, Any]
    parameters: int
    weights_sha256: str
    metrics: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> bytes:
        """Serialised card, with the format tag and version."""
        body = {"format": FORMAT, "version": FORMAT_VERSION, **to_dict(self)}
        return json.dumps(body, indent=2, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes, source: str) -> ModelCard:
        """Parse a card, naming ``source`` in any error."""
        try:
            body = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise CheckpointError(f"{source}: not valid JSON ({error})") from error
        if not isinstance(body, dict) or body.get("format") != FORMAT:
            raise CheckpointError(f"{source}: not a {FORMAT} card (format tag missing or different)")
        if body.get("version") != FORMAT_VERSION:
            raise CheckpointError(f"{source}: card version {body.get('version')!r}; this code reads {FORMAT_VERSION}")
        body = {k: v for k, v in body.items() if k not in ("format", "version")}
        try:
            return from_dict(cls, body, source)
        except ValueError as error:
            raise CheckpointError(str(error)) from error


def weights_to_bytes(model: nn.Module) -> bytes:
    """The model's state dict as safetensors bytes (tensors made contiguous, on the CPU)."""
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    return safetensors_save(state)


def sha256(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def _looks_like_pickle(data: bytes) -> str | None:
    if data[:2] == b"PK":
        return "a zip archive (torch.save format, which holds a pickle)"
    if data[:1] == b"\x80" and len(data) > 1 and data[1] <= 5:
        return "a Python pickle"
    return None


def weights_from_bytes(data: bytes, source: str, expected_sha256: str | None = None) -> dict[str, torch.Tensor]:
    """Parse safetensors bytes; refuse pickles and corrupted or truncated files, naming ``source``."""
    kind = _looks_like_pickle(data)
    if kind is not None:
        raise CheckpointError(
            f"{source}: refusing to load {kind}; weights are only read from safetensors files"
        )
    if expected_sha256 is not None and sha256(data) != expected_sha256:
        raise CheckpointError(
            f"{source}: checksum mismatch ({len(data)} bytes): the file is truncated or corrupted"
        )
    try:
        return safetensors_load(data)
    except (SafetensorError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"{source}: not a readable safetensors file ({error})") from error


def model_card(kind: str, model: nn.Module, run: Any, weights: bytes, metrics: dict[str, Any] | None = None) -> ModelCard:
    """The card of a trained model; its run config rebuilds the network with no other input."""
    return ModelCard(kind, to_dict(run), parameter_count(model), sha256(weights), dict(metrics or {}))


def build_from_card(card: ModelCard, state: dict[str, torch.Tensor], source: str, expected_kind: str | None = None) -> tuple[nn.Module, Any]:
    """Rebuild the network a card describes and load ``state`` into it (strict key and shape match)."""
    if expected_kind is not None and card.kind != expected_kind:
        raise CheckpointError(f"{source}: holds a {card.kind!r}, not a {expected_kind!r}")
    if card.kind not in STORED_KINDS:
        raise CheckpointError(f"{source}: unknown model kind {card.kind!r}; this code reads {', '.join(STORED_KINDS)}")
    kind = STORED_KINDS[card.kind]
    try:
        run = from_dict(kind.config_type, card.config, f"{source}: card config")
        model = kind.build(run)
    except ValueError as error:
        raise CheckpointError(str(error)) from error
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise CheckpointError(f"{source}: weights do not match the card's config ({error})") from error
    return model.eval(), run


RUN_STATE_MAGIC = b"diffusion-lab/run-state/1\n"


def run_state_to_bytes(run_config: dict[str, Any], trainer_state: bytes) -> bytes:
    """A resume state that names its run: a tag line, the run config's JSON (length first), then the trainer's bytes."""
    config = json.dumps(run_config, sort_keys=True).encode()
    return RUN_STATE_MAGIC + len(config).to_bytes(8, "big") + config + trainer_state


def run_state_from_bytes(data: bytes, source: str) -> tuple[dict[str, Any], bytes]:
    """(run config, trainer state) of a ``run_state_to_bytes`` file; CheckpointError naming ``source`` otherwise."""
    if not data.startswith(RUN_STATE_MAGIC):
        raise CheckpointError(f"{source}: a resume state that does not say which run config saved it "
                              f"(written by an older version, or not a resume state); start the run without --resume")
    start = len(RUN_STATE_MAGIC) + 8
    length = int.from_bytes(data[len(RUN_STATE_MAGIC):start], "big")
    try:
        config = json.loads(data[start:start + length])
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{source}: the run config inside the resume state is damaged ({error})") from error
    return config, data[start + length:]


def config_differences(saved: Any, current: Any, prefix: str = "") -> list[str]:
    """Each key whose value differs between two configs (nested dicts by dotted key): 'train.lr: saved 0.002, flags 0.001'."""
    if isinstance(saved, dict) and isinstance(current, dict):
        return [line for key in sorted(set(saved) | set(current))
                for line in config_differences(saved.get(key, "(absent)"), current.get(key, "(absent)"), f"{prefix}{key}.")]
    return [] if saved == current else [f"{prefix.rstrip('.')}: saved {saved!r}, flags {current!r}"]
