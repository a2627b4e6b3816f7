"""Where data lives, how the validation split is carved, and batching by indexing."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from arnn.errors import UsageError
from arnn.tasks._base import Split, Task

DATA_DIR_ENV = "ARNN_DATA_DIR"
DEFAULT_DATA_DIR = Path("~/.cache/arnn/data")


def resolve_data_dir(flag: Path | str | None) -> Path:
    """--data-dir, else $ARNN_DATA_DIR, else ~/.cache/arnn/data."""
    chosen = flag or os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR
    return Path(chosen).expanduser()


@dataclass
class Data:
    train: Split
    val: Split
    test: Split


def prepare_data(
    task: Task,
    *,
    data_dir: Path,
    download: bool,
    val_size: int,
    split_seed: int,
    subset: int | None,
) -> Data:
    """Load the task once, carve the validation split with a seeded permutation, and keep
    at most `subset` examples of each split."""
    train, test = task.load(data_dir, download=download)
    if val_size >= len(train):
        raise UsageError(
            f"--val-size: {val_size} leaves no training data; the {task.name} training set "
            f"has {len(train)} examples"
        )
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(split_seed))
    data = Data(train=train.take(order[val_size:]), val=train.take(order[:val_size]), test=test)
    if subset is not None:
        data = Data(
            *(
                split.take(torch.arange(min(subset, len(split))))
                for split in (data.train, data.val, data.test)
            )
        )
    return data


def batches(
    split: Split, batch_size: int, generator: torch.Generator | None = None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(stored inputs, targets) batches; shuffled when a generator is given."""
    device = split.targets.device
    if generator is None:
        order = torch.arange(len(split), device=device)
    else:
        order = torch.randperm(len(split), generator=generator, device=device)
    for start in range(0, len(split), batch_size):
        index = order[start : start + batch_size]
        yield split.inputs[index], split.targets[index]


def num_batches(split: Split, batch_size: int) -> int:
    return -(-len(split) // batch_size)
