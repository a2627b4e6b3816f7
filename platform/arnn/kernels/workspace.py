"""Buffers a hand-written scan keeps from one call to the next.

On a CPU, fresh memory costs page faults, about 0.2 ms per MB: a scan whose activations
fill a few hundred MB would spend tens of milliseconds a batch on them, every batch. A
module owns one `Workspace`; its scan takes its buffers from it and gives them back when it
is done with them (the forward, what only the forward reads, and all of them where no graph
is recorded; the backward, the rest), so the next batch finds them already mapped. A
buffer still in use (a second forward before the first one's backward) is simply not there
to take: a fresh one is made. Buffers are ordinary tensors even when taken under
torch.inference_mode (an evaluation), so that training can write into them after. Copies
and pickles of the module start empty.
"""

from __future__ import annotations

import torch

from arnn.kernels.eager import refuse_second_backward


class Workspace:
    def __init__(self) -> None:
        self._free: dict[str, torch.Tensor] = {}

    def take(self, name: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        """An uninitialised tensor of `shape`, with `like`'s dtype and device."""
        found = self._free.pop(name, None)
        if (
            found is None
            or found.shape != shape
            or found.dtype != like.dtype
            or found.device != like.device
            or found.is_inference()
        ):
            with torch.inference_mode(False):
                return torch.empty(shape, dtype=like.dtype, device=like.device)
        return found

    def give(self, name: str, tensor: torch.Tensor) -> None:
        self._free[name] = tensor

    def __deepcopy__(self, memo) -> Workspace:
        return Workspace()

    def __getstate__(self) -> dict:
        return {"_free": {}}


class ScanBuffers:
    """One call's buffers that its backward reads: taken from the workspace (or made) by
    name in the forward, handed to the backward, and given back by `release` when the
    backward is done with them, or by the forward itself where no graph is recorded.
    `scan` names the Function in the error a second backward gets."""

    def __init__(self, workspace: Workspace | None, recorded: bool, scan: str):
        self.workspace = workspace if workspace is not None else Workspace()
        self.recorded = recorded
        self.scan = scan
        self.taken: dict[str, torch.Tensor] | None = {}

    def take(self, name: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        self.taken[name] = self.workspace.take(name, shape, like)
        return self.taken[name]

    def end_forward(self) -> None:
        if not self.recorded:
            self.release()

    def for_backward(self) -> dict[str, torch.Tensor]:
        """The buffers, until they are released: a backward overwrites them as it goes,
        so a second one (retain_graph) is refused."""
        refuse_second_backward(self.taken, self.scan)
        return self.taken

    def release(self) -> None:
        for name, tensor in self.taken.items():
            self.workspace.give(name, tensor)
        self.taken = None


def records_graph(*tensors: torch.Tensor | None) -> bool:
    """Whether autograd records a Function applied to `tensors` now: grad mode is on and
    one of them requires grad. (Inside its forward, ctx.needs_input_grad cannot tell: it
    follows requires_grad alone.) Where not, the forward may give every buffer back."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)
