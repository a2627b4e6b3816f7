"""What a task is: stored data, how a stored batch becomes model input, and how it is scored."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F


@dataclass
class Split:
    """One split held in memory: inputs in their stored form (often uint8) and targets."""

    inputs: torch.Tensor
    targets: torch.Tensor

    def __len__(self) -> int:
        return len(self.targets)

    def take(self, index: torch.Tensor) -> Split:
        return Split(self.inputs[index], self.targets[index])

    def to(self, device: torch.device) -> Split:
        return Split(self.inputs.to(device), self.targets.to(device))


class Task:
    """A sequence task. Subclasses set the shape attributes and implement `load`.

    `load` returns the train and test splits in stored form, preprocessed once;
    `to_inputs` turns a stored batch into float sequences [B, T, input_size] on its device
    (normalisation, one-hot codes, noise), so that batching is indexing and no per-sample
    transform runs in the training loop.
    """

    name: str
    input_size: int
    seq_len: int
    output_size: int

    def load(self, data_dir: Path, *, download: bool) -> tuple[Split, Split]:
        raise NotImplementedError

    def to_inputs(self, stored: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return stored

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(outputs, targets)

    def score(self, outputs: torch.Tensor, targets: torch.Tensor) -> tuple[float, int]:
        """(number correct, number scored) for the accuracy metric."""
        return (outputs.argmax(-1) == targets).sum().item(), targets.numel()
