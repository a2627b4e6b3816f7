"""Ctrl-C and SIGTERM as a request to stop, told apart from a run that ended by itself.

`Interrupted` is what a command raises when it was stopped by a signal: the command line
turns it into exit code 128 + the signal's number (130 for SIGINT, 143 for SIGTERM).

`StopSignals` catches both signals for the length of a `with` block. The first one is
recorded and handed to `on_first` (a sweep asks Ray Tune to stop gracefully there: Tune
saves its state, with the trials in flight still unfinished, so that `--resume` goes on
with them); without `on_first`, or at the second signal, `Interrupted` is raised at once.
"""

from __future__ import annotations

import signal
from collections.abc import Callable

CAUGHT = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """Stopped by SIGINT or SIGTERM."""

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name


class StopSignals:
    """with StopSignals(on_first=...) as stop: ...; then stop.signum is the first signal
    received (None when none was)."""

    def __init__(self, on_first: Callable[[int], None] | None = None):
        self.on_first = on_first
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame) -> None:
        if self.signum is not None or self.on_first is None:
            self.signum = self.signum or signum
            raise Interrupted(self.signum)
        self.signum = signum
        self.on_first(signum)

    def __enter__(self) -> StopSignals:
        for signum in CAUGHT:
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
