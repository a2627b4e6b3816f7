"""The classic long-memory problems, generated in memory from a seed: no download needed.

adding (Hochreiter & Schmidhuber 1997): two channels, a value in [0, 1) and a marker; the
target is the sum of the two marked values, one marked in each half. Scored as accurate
when the prediction is within 0.04 of the sum.

copy: K symbols from an alphabet of 8, then `delay` blank steps; from the last state the
model names all K symbols (K classifications of 8). Scored per symbol.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from arnn.tasks._base import Split, Task
from arnn.tasks.catalog import AddingOptions, CopyOptions, SyntheticOptions

ADDING_TOLERANCE = 0.04


class GeneratedTask(Task):
    """A task whose train and test sets are drawn from one seeded generator."""

    def __init__(self, options: SyntheticOptions):
        self.options = options

    def load(self, data_dir: Path, *, download: bool) -> tuple[Split, Split]:
        generator = torch.Generator().manual_seed(self.options.data_seed)
        return (
            self.generate(self.options.train_size, generator),
            self.generate(self.options.test_size, generator),
        )

    def generate(self, count: int, generator: torch.Generator) -> Split:
        raise NotImplementedError


class AddingTask(GeneratedTask):
    name = "adding"
    input_size = 2
    output_size = 1

    def __init__(self, options: AddingOptions):
        super().__init__(options)
        self.seq_len = options.length

    def generate(self, count: int, generator: torch.Generator) -> Split:
        half = self.seq_len // 2
        values = torch.rand(count, self.seq_len, generator=generator)
        first = torch.randint(0, half, (count,), generator=generator)
        second = torch.randint(half, self.seq_len, (count,), generator=generator)
        markers = torch.zeros(count, self.seq_len)
        rows = torch.arange(count)
        markers[rows, first] = 1.0
        markers[rows, second] = 1.0
        targets = values[rows, first] + values[rows, second]
        return Split(torch.stack([values, markers], dim=-1), targets)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(outputs.squeeze(-1), targets)

    def score(self, outputs: torch.Tensor, targets: torch.Tensor) -> tuple[float, int]:
        close = (outputs.squeeze(-1) - targets).abs() < ADDING_TOLERANCE
        return close.sum().item(), targets.numel()


def adding(options: AddingOptions) -> Task:
    return AddingTask(options)


class CopyTask(GeneratedTask):
    """Tokens are stored as integers (0 = blank) and one-hot coded per batch."""

    name = "copy"

    def __init__(self, options: CopyOptions):
        super().__init__(options)
        self.symbols = options.symbols
        self.alphabet = options.alphabet
        self.input_size = options.alphabet + 1
        self.seq_len = options.symbols + options.delay
        self.output_size = options.symbols * options.alphabet

    def generate(self, count: int, generator: torch.Generator) -> Split:
        targets = torch.randint(0, self.alphabet, (count, self.symbols), generator=generator)
        tokens = torch.zeros(count, self.seq_len, dtype=torch.long)
        tokens[:, : self.symbols] = targets + 1
        return Split(tokens, targets)

    def to_inputs(self, stored: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return F.one_hot(stored, self.input_size).float()

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(outputs.reshape(-1, self.alphabet), targets.reshape(-1))

    def score(self, outputs: torch.Tensor, targets: torch.Tensor) -> tuple[float, int]:
        guesses = outputs.reshape(-1, self.symbols, self.alphabet).argmax(-1)
        return (guesses == targets).sum().item(), targets.numel()


def copy(options: CopyOptions) -> Task:
    return CopyTask(options)
