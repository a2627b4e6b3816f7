"""The one scoring rule: a trial's score is its best epoch; the best trial is the best
finished one; a cell is complete when every seed asked finished or diverged."""

from __future__ import annotations

import math

from arnn import scoring
from arnn.scoring import TrialRecord


def test_a_trials_score_is_its_best_epoch_not_its_last():
    assert scoring.score([0.5, 0.9, 0.7], "max") == 0.9
    assert scoring.score([0.5, 0.2, 0.7], "min") == 0.2
    assert scoring.score([0.5, math.nan, math.inf], "max") == 0.5
    assert scoring.score([], "max") is None and scoring.score([math.nan], "min") is None


def test_the_best_trial_is_the_best_finished_one():
    records = [
        TrialRecord("pruned", scoring.PRUNED, 0.99),
        TrialRecord("diverged", scoring.DIVERGED, 0.98),
        TrialRecord("interrupted", scoring.INTERRUPTED, 0.97),
        TrialRecord("failed", scoring.FAILED, None),
        TrialRecord("a", scoring.FINISHED, 0.6),
        TrialRecord("b", scoring.FINISHED, 0.8),
    ]
    assert scoring.best_trial(records, "max").trial == "b"
    assert scoring.best_trial(records, "min").trial == "a"
    assert scoring.best_trial(records[:4], "max") is None
    assert [r.trial for r in scoring.ranked(records, "max")][:3] == ["b", "a", "pruned"]


def test_five_outcomes_and_never_started_are_counted_apart():
    records = [TrialRecord(str(i), o, None) for i, o in enumerate(scoring.OUTCOMES)]
    counts = scoring.outcome_counts(records, total=8)
    assert counts == {
        "finished": 1,
        "pruned": 1,
        "interrupted": 1,
        "diverged": 1,
        "failed": 1,
        "never started": 3,
    }
    assert not scoring.every_trial_failed(counts)


def test_every_trial_failed_only_when_trials_ran_and_failed():
    assert scoring.every_trial_failed(scoring.outcome_counts([TrialRecord("a", "failed", None)], 1))
    nothing_ran = scoring.outcome_counts([], total=4)
    assert nothing_ran["never started"] == 4 and not scoring.every_trial_failed(nothing_ran)
    interrupted = scoring.outcome_counts(
        [TrialRecord("a", "failed", None), TrialRecord("b", "interrupted", None)], 2
    )
    assert not scoring.every_trial_failed(interrupted)


def test_a_diverged_seed_is_done_a_failed_one_is_missing():
    count = scoring.count_seeds(
        {1000: ["finished"], 1001: ["diverged"], 1002: ["failed"], 1003: ["failed", "finished"]},
        [1000, 1001, 1002, 1003, 1004],
    )
    assert (count.asked, count.finished, count.diverged) == (5, 2, 1)
    assert count.missing == (1002, 1004) and not count.complete
    assert scoring.count_seeds({7: ["diverged"]}, [7]).complete
