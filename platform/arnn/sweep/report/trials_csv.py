"""trials.csv: one row per trial, in the order the searcher asked for them: its number,
run name and id, sampled values, outcome, score, epochs and seconds."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from arnn.sweep.report.reading import Sweep


def write_trials_csv(state: Sweep, path: Path) -> None:
    names = list(state.spec.params)
    names += sorted({k for t in state.trials for k in t.record.sampled} - set(names))
    rows = [
        {
            "number": t.number,
            "name": t.name,
            "trial": t.record.trial,
            **{name: t.record.sampled.get(name) for name in names},
            "outcome": t.outcome,
            "score": t.record.score,
            "epochs": t.record.epochs if t.record.epochs is not None else t.last_epoch,
            "seconds": t.seconds,
            "run_id": t.record.run_id,
        }
        for t in state.trials
    ]
    columns = ["number", "name", "trial", *names, "outcome", "score", "epochs", "seconds", "run_id"]
    pd.DataFrame(rows, columns=columns).to_csv(path, index=False)
