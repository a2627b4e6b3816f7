from __future__ import annotations

import pytest
import torch

from arnn.data import batches, prepare_data, resolve_data_dir
from arnn.errors import UsageError
from arnn.tasks import create_task, list_tasks
from tests.datasets import write_broken_mnist


def _prepare(task, root, **overrides):
    settings = dict(data_dir=root, download=False, val_size=50, split_seed=0, subset=None)
    return prepare_data(task, **{**settings, **overrides})


def test_mnist_is_read_through_torchvision_as_pixel_sequences(mnist_root):
    from torchvision.datasets import MNIST

    task = create_task("mnist")
    data = _prepare(task, mnist_root)
    assert (len(data.train), len(data.val), len(data.test)) == (150, 50, 100)
    assert data.train.inputs.shape == (150, 784, 1) and data.train.inputs.dtype == torch.uint8
    x = task.to_inputs(data.test.inputs[:4], None)
    assert x.shape == (4, 784, 1) and x.dtype == torch.float32
    reference = MNIST(mnist_root, train=False)
    expected = (reference.data[:4].reshape(4, 784, 1).float() / 255 - 0.1307) / 0.3081
    torch.testing.assert_close(x, expected)
    assert torch.equal(data.test.targets, reference.targets)  # integer labels: exact


def test_pmnist_applies_one_permutation_from_its_recorded_seed(mnist_root):
    plain, permuted = create_task("mnist"), create_task("pmnist")
    a, b = _prepare(plain, mnist_root), _prepare(permuted, mnist_root)
    expected = torch.randperm(784, generator=torch.Generator().manual_seed(12008))
    assert torch.equal(b.test.inputs, a.test.inputs[:, expected])  # uint8 pixels, moved
    other = _prepare(create_task("pmnist", {"perm_seed": 1}), mnist_root)
    assert not torch.equal(other.test.inputs, b.test.inputs)


def test_validation_split_is_seeded_disjoint_and_subset_caps_each_split(mnist_root):
    task = create_task("mnist")
    one, again = _prepare(task, mnist_root), _prepare(task, mnist_root)
    assert torch.equal(one.val.inputs, again.val.inputs)  # uint8 pixels, picked
    other = _prepare(task, mnist_root, split_seed=1)
    assert not torch.equal(one.val.inputs, other.val.inputs)
    train_rows = {bytes(r.numpy()) for r in one.train.inputs}
    assert not any(bytes(r.numpy()) in train_rows for r in one.val.inputs)
    small = _prepare(task, mnist_root, subset=20)
    assert (len(small.train), len(small.val), len(small.test)) == (20, 20, 20)
    with pytest.raises(UsageError, match="--val-size"):
        _prepare(task, mnist_root, val_size=200)


def test_missing_data_is_one_line_naming_the_folder_and_files(tmp_path):
    with pytest.raises(UsageError) as raised:
        _prepare(create_task("mnist"), tmp_path)
    message = str(raised.value)
    assert "\n" not in message
    assert str(tmp_path / "MNIST" / "raw") in message and "train-images-idx3-ubyte" in message
    with pytest.raises(UsageError, match="cifar-10-batches-py.*data_batch_1"):
        _prepare(create_task("cifar10"), tmp_path)


def test_unreadable_data_is_one_line_saying_so(tmp_path):
    raw = write_broken_mnist(tmp_path)
    with pytest.raises(UsageError) as caught:
        create_task("mnist", {}).load(tmp_path, download=False)
    message = str(caught.value)
    assert "\n" not in message and f"MNIST in {raw} cannot be read" in message, message


def test_pixel_cifar10_is_scan_line_rgb(cifar_root):
    from torchvision.datasets import CIFAR10

    task = create_task("cifar10")
    data = _prepare(task, cifar_root)
    assert (len(data.train), len(data.test)) == (150, 40)
    reference = CIFAR10(cifar_root, train=False)
    # uint8 pixels, moved: exact
    assert torch.equal(data.test.inputs, torch.from_numpy(reference.data).reshape(40, 1024, 3))
    assert task.to_inputs(data.test.inputs[:2], None).shape == (2, 1024, 3)


def test_noisy_cifar10_rows_then_noise_independent_or_fixed(cifar_root):
    from torchvision.datasets import CIFAR10

    independent = create_task("noisy_cifar10")
    data = _prepare(independent, cifar_root)
    image = torch.from_numpy(CIFAR10(cifar_root, train=False).data[0])  # [32, 32, 3]
    row = data.test.inputs[0, 5]
    # uint8 pixels, moved: exact
    assert torch.equal(row, torch.cat([image[5, :, 0], image[5, :, 1], image[5, :, 2]]))

    generator = torch.Generator().manual_seed(0)
    x = independent.to_inputs(data.test.inputs[:3], generator)
    assert x.shape == (3, 1000, 96)
    assert not torch.equal(x[0, 32:], x[1, 32:])  # fresh noise for every image
    assert abs(x[:, 32:].std().item() - 1) < 0.05

    fixed = create_task("noisy_cifar10", {"noise": "fixed"})
    y = fixed.to_inputs(data.test.inputs[:3], generator)
    # Equal bits by construction: the fixed noise is one tensor expanded over the images, and
    # the rows are the same op on the same pixels in one process
    assert torch.equal(y[0, 32:], y[1, 32:]) and torch.equal(y[:, :32], x[:, :32])
    with pytest.raises(UsageError, match="'noise'"):
        create_task("noisy_cifar10", {"noise": "pink"})


def test_adding_targets_are_the_sum_of_the_marked_values():
    task = create_task("adding", {"length": 30, "train_size": 64, "test_size": 8})
    train, test = task.load(None, download=False)
    assert train.inputs.shape == (64, 30, 2)
    markers = train.inputs[..., 1]
    assert (markers.sum(1) == 2).all()
    assert (markers[:, :15].sum(1) == 1).all()
    sums = (train.inputs[..., 0] * markers).sum(1)
    torch.testing.assert_close(sums, train.targets)
    again, _ = task.load(None, download=False)
    assert torch.equal(again.inputs, train.inputs)  # seeded: the same draws, in one process
    perfect = train.targets.unsqueeze(-1)
    assert task.score(perfect, train.targets) == (64, 64)


def test_copy_asks_for_the_first_symbols_after_the_delay():
    task = create_task("copy", {"delay": 20, "symbols": 4, "alphabet": 5, "train_size": 16})
    train, _ = task.load(None, download=False)
    x = task.to_inputs(train.inputs, None)
    assert x.shape == (16, 24, 6) and task.output_size == 20
    assert torch.equal(x[:, :4].argmax(-1) - 1, train.targets)  # integers: exact
    assert (x[:, 4:, 0] == 1).all()  # blanks
    logits = torch.nn.functional.one_hot(train.targets, 5).float().reshape(16, 20)
    assert task.score(logits, train.targets) == (64, 64)
    assert task.loss(logits * 100, train.targets) < 1e-6


@pytest.mark.parametrize("name", list_tasks())
def test_every_task_declares_consistent_shapes(name):
    task = create_task(name)
    assert task.input_size >= 1 and task.seq_len >= 1 and task.output_size >= 1


def test_batches_cover_the_split_once_in_seeded_order(mnist_root):
    data = _prepare(create_task("mnist"), mnist_root)
    seen = torch.cat([t for _, t in batches(data.train, 32, torch.Generator().manual_seed(3))])
    again = torch.cat([t for _, t in batches(data.train, 32, torch.Generator().manual_seed(3))])
    assert torch.equal(seen, again)  # integer labels, in the seeded order: exact
    assert sorted(seen.tolist()) == sorted(data.train.targets.tolist())


def test_data_dir_comes_from_flag_then_environment_then_cache(monkeypatch, tmp_path):
    assert resolve_data_dir(tmp_path) == tmp_path
    monkeypatch.setenv("ARNN_DATA_DIR", str(tmp_path / "env"))
    assert resolve_data_dir(None) == tmp_path / "env"
    monkeypatch.delenv("ARNN_DATA_DIR")
    assert str(resolve_data_dir(None)).endswith(".cache/arnn/data")


def test_real_mnist_has_the_canonical_split(real_mnist_root):
    data = prepare_data(
        create_task("mnist"),
        data_dir=real_mnist_root,
        download=False,
        val_size=5000,
        split_seed=0,
        subset=None,
    )
    assert (len(data.train), len(data.val), len(data.test)) == (55_000, 5_000, 10_000)
    counts = torch.bincount(torch.cat([data.train.targets, data.val.targets]), minlength=10)
    assert counts[:3].tolist() == [5923, 6742, 5958]
