"""Image classification read as sequences: pixel MNIST, permuted MNIST, pixel and
noise-padded CIFAR-10. Loaded through torchvision's dataset classes, reshaped once into
uint8 sequences held in memory, normalised per batch on the device."""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import shutil
from pathlib import Path

import torch

from arnn.errors import UsageError
from arnn.tasks._base import Split, Task
from arnn.tasks.catalog import (
    Cifar10Options,
    MnistOptions,
    NoisyCifar10Options,
    PermutedMnistOptions,
)

MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
CIFAR10_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch", "batches.meta")

MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)

NOISE_STEPS = 968


# Inside the data root: the lock that one downloading process holds at a time, and the
# folder a download is made in before its files are moved into place.
DOWNLOAD_LOCK = ".arnn-download.lock"
DOWNLOAD_STAGING = ".arnn-download.partial"


class _Missing(Exception):
    """torchvision found no (complete) copy of the dataset."""


def _read(dataset_class, root: Path, folder: str, files: tuple[str, ...]):
    """Both splits as they are on disk; _Missing where torchvision finds no copy (for
    CIFAR-10, also one whose checksums are wrong); a copy that is there but cannot be
    read (a truncated or foreign file: torchvision checks no checksum of MNIST's
    decompressed files) is one UsageError line."""
    try:
        return dataset_class(root, train=True), dataset_class(root, train=False)
    except RuntimeError as error:
        if str(error).startswith("Dataset not found"):
            raise _Missing from None
        problem = error
    except Exception as error:  # torchvision asserts on bad headers
        problem = error
    raise UsageError(
        f"{dataset_class.__name__} in {root / folder} cannot be read "
        f"({type(problem).__name__}{': ' + _one_line(str(problem)) if str(problem) else ''}): "
        f"the files {', '.join(files)} must be the dataset's own, complete; delete them to "
        f"download again"
    )


def _one_line(text: str, limit: int = 300) -> str:
    joined = " ".join(line.strip() for line in text.splitlines() if line.strip())
    return joined if len(joined) <= limit else joined[: limit - 3] + "..."


@contextlib.contextmanager
def download_lock(root: Path):
    """An exclusive lock on <root>/.arnn-download.lock (created, with its folders): one
    process downloads into a data root at a time; the others wait, then find the files."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / DOWNLOAD_LOCK, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _download(dataset_class, root: Path) -> None:
    """torchvision's download, made in <root>/.arnn-download.partial and then moved into
    place file by file (os.replace: atomic, the same file system). torchvision writes
    straight to the final names and checks the checksums of the archives only, not of the
    files it extracts; made this way, a file under its final name is always complete, and
    what an interrupted download leaves is only the staging folder, removed by the next.
    Call with the download lock held."""
    staging = root / DOWNLOAD_STAGING
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        # torchvision prints each failed mirror; the user gets our one line instead.
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            dataset_class(staging, train=True, download=True)
            dataset_class(staging, train=False, download=True)
        for source in sorted(p for p in staging.rglob("*") if p.is_file()):
            target = root / source.relative_to(staging)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(source, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _open_dataset(dataset_class, root: Path, folder: str, files: tuple[str, ...], download: bool):
    """Both splits of a torchvision dataset, downloaded first where missing and allowed
    (under the data root's download lock: several trials may start at once on one node).
    A missing or unreadable dataset is one UsageError line."""
    try:
        return _read(dataset_class, root, folder, files)
    except _Missing:
        pass
    why = "(download disabled)"
    if download:
        why = "and could not be downloaded"
        try:
            with download_lock(root):
                try:  # another process may have downloaded it while this one waited
                    return _read(dataset_class, root, folder, files)
                except _Missing:
                    pass
                _download(dataset_class, root)
                return _read(dataset_class, root, folder, files)
        except _Missing:
            why = "and the download did not provide it"
        except UsageError:
            raise
        except Exception as error:
            why += f" ({type(error).__name__}: {_one_line(str(error), 200)})"
    raise UsageError(
        f"{dataset_class.__name__} not found in {root / folder} {why}: expected files "
        f"{', '.join(files)}; pass --data-dir or set ARNN_DATA_DIR to the folder that holds "
        f"{folder}/"
    )


class ImageSequenceTask(Task):
    """Images stored as uint8 sequences [N, T, m]; `to_inputs` normalises per channel."""

    output_size = 10

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...], repeat: int = 1):
        self._mean = torch.tensor(mean).repeat_interleave(repeat)
        self._std = torch.tensor(std).repeat_interleave(repeat)

    def to_inputs(self, stored: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        mean = self._mean.to(stored.device)
        std = self._std.to(stored.device)
        return (stored.float() / 255.0 - mean) / std


class MnistTask(ImageSequenceTask):
    input_size = 1
    seq_len = 784

    def __init__(self, name: str = "mnist", permutation: torch.Tensor | None = None):
        super().__init__(MNIST_MEAN, MNIST_STD)
        self.name = name
        self.permutation = permutation

    def load(self, data_dir: Path, *, download: bool) -> tuple[Split, Split]:
        from torchvision.datasets import MNIST

        train, test = _open_dataset(MNIST, data_dir, "MNIST/raw", MNIST_FILES, download)
        return self._as_sequences(train), self._as_sequences(test)

    def _as_sequences(self, dataset) -> Split:
        pixels = dataset.data.reshape(len(dataset.data), self.seq_len)
        if self.permutation is not None:
            pixels = pixels[:, self.permutation]
        return Split(pixels.unsqueeze(-1).contiguous(), dataset.targets.long())


def mnist(options: MnistOptions) -> Task:
    return MnistTask()


def pmnist(options: PermutedMnistOptions) -> Task:
    generator = torch.Generator().manual_seed(options.perm_seed)
    return MnistTask("pmnist", permutation=torch.randperm(784, generator=generator))


def _cifar10_images(data_dir: Path, download: bool) -> tuple[tuple, tuple]:
    """(images [N, 32, 32, 3] uint8, labels) for the train and test sets."""
    from torchvision.datasets import CIFAR10

    train, test = _open_dataset(CIFAR10, data_dir, "cifar-10-batches-py", CIFAR10_FILES, download)
    return tuple(
        (torch.from_numpy(ds.data), torch.tensor(ds.targets, dtype=torch.long))
        for ds in (train, test)
    )


class PixelCifar10Task(ImageSequenceTask):
    name = "cifar10"
    input_size = 3
    seq_len = 1024

    def __init__(self):
        super().__init__(CIFAR10_MEAN, CIFAR10_STD)

    def load(self, data_dir: Path, *, download: bool) -> tuple[Split, Split]:
        return tuple(  # type: ignore[return-value]
            Split(images.reshape(len(images), 1024, 3).contiguous(), labels)
            for images, labels in _cifar10_images(data_dir, download)
        )


def cifar10(options: Cifar10Options) -> Task:
    return PixelCifar10Task()


class NoisyCifar10Task(ImageSequenceTask):
    """One image row per step (its R, G and B values: m = 96), then 968 noise steps."""

    name = "noisy_cifar10"
    input_size = 96
    seq_len = 32 + NOISE_STEPS

    def __init__(self, noise: str, noise_seed: int):
        super().__init__(CIFAR10_MEAN, CIFAR10_STD, repeat=32)
        self.noise = noise
        generator = torch.Generator().manual_seed(noise_seed)
        self._fixed_noise = torch.randn(NOISE_STEPS, self.input_size, generator=generator)

    def load(self, data_dir: Path, *, download: bool) -> tuple[Split, Split]:
        # [N, row, col, channel] -> [N, row, channel, col] -> rows of (R..., G..., B...)
        return tuple(  # type: ignore[return-value]
            Split(images.permute(0, 1, 3, 2).reshape(len(images), 32, 96).contiguous(), labels)
            for images, labels in _cifar10_images(data_dir, download)
        )

    def to_inputs(self, stored: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        rows = super().to_inputs(stored, generator)
        shape = (len(stored), NOISE_STEPS, self.input_size)
        if self.noise == "fixed":
            noise = self._fixed_noise.to(stored.device).expand(shape)
        else:
            noise = torch.randn(shape, generator=generator, device=stored.device)
        return torch.cat([rows, noise], dim=1)


def noisy_cifar10(options: NoisyCifar10Options) -> Task:
    return NoisyCifar10Task(options.noise, options.noise_seed)
