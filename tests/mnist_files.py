"""Full MNIST's files as torchvision keeps them, written from the embedded subset: a stand-in that needs no network."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import torch

from diffusion.lab.datasets import load_embedded_mnist


def write_torchvision_mnist(root: Path) -> Path:
    """``root/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte`` holding the embedded train and test splits."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, split in (("train", "train"), ("t10k", "test")):
        digits = load_embedded_mnist(split)
        pixels = ((digits.images[:, 0] + 1) * 127.5).round().to(torch.uint8).numpy()
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 0x0803, *pixels.shape) + pixels.tobytes())
        labels = digits.labels.numpy().astype(np.uint8)
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 0x0801, len(labels)) + labels.tobytes())
    return root
