"""A sweep request holds every option of a sweep once: the flags of `arnn sweep` and of
reproduce/run.py come from it, and so does the line that resumes a sweep."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

import pytest

from arnn.cli import _build_parser
from arnn.errors import UsageError
from arnn.sweep.request import FLAGS, SweepRequest, add_flags, flag_of, make_request


def _flags(parser: argparse.ArgumentParser) -> set[str]:
    return {option for action in parser._actions for option in action.option_strings} - {
        "-h",
        "--help",
    }


def test_arnn_sweep_has_a_flag_for_each_option_a_request_exposes_and_no_other():
    parser = _build_parser(with_bench=False)
    sweep = parser._subparsers._group_actions[0].choices["sweep"]
    assert _flags(sweep) == {flag_of(name) for name in FLAGS if name != "spec"}
    assert {"--name", "--samples", "--resume", "--study-storage"} <= _flags(sweep)
    assert not {"--tags", "--score-test", "--trial-kind"} & _flags(sweep)  # Python only


def test_a_flag_problem_is_named_by_its_flag():
    with pytest.raises(UsageError, match=r"^--samples: input should be greater than or equal"):
        make_request({"spec": "s.yaml", "samples": 0})
    with pytest.raises(UsageError, match=r"^--resume: name the sweep to resume with --name$"):
        make_request({"spec": "s.yaml", "resume": True})


def test_the_resume_line_repeats_every_flag_given_and_parses_back_to_the_same_request():
    parser = argparse.ArgumentParser()
    add_flags(parser)
    given = ["s.yaml", "--name", "mine", "--samples", "4", "--address", "auto",
             "--tracking-uri", "http://HEAD:5000", "--study-storage",
             "postgresql://mlflow:secret@HEAD/optuna"]  # fmt: skip
    request = make_request(vars(parser.parse_args(given)))
    line = request.resume_line()
    assert line.startswith("arnn sweep s.yaml --name mine --resume")
    assert "secret" not in line and "***" in line  # a password is not printed
    again = make_request(vars(parser.parse_args(shlex.split(line)[2:])))
    assert again.model_dump(exclude={"resume", "study_storage"}) == request.model_dump(
        exclude={"resume", "study_storage"}
    )
    assert again.resume and isinstance(again.spec, Path)


def test_a_callers_own_resume_command_is_the_line_it_prints():
    request = SweepRequest(spec=Path("s.yaml"), name="x", resume_command="python run.py --x")
    assert request.resume_line() == "python run.py --x"
