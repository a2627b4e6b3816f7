"""Bad input is refused before torch, Ray, MLflow or Optuna load: validating flags or a spec
needs none of them (the registries and the configuration are torch-free)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "ray", "mlflow", "optuna", "torchvision")
PROBE = f"""
import json, sys
from arnn.cli import main
code = main(sys.argv[1:])
print(json.dumps({{"code": code, "loaded": [m for m in {HEAVY!r} if m in sys.modules]}}))
"""


def _refuse(*argv: str, cwd) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, cwd=cwd, timeout=120
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["stderr"] = done.stderr
    return result


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "a spec is a mapping of keys"),
        ("name: x\ntask: mnist\nmodel: antisymmetric\nschedular: {}\n", "did you mean scheduler"),
        ("name: x\ntask: mnist\nmodel: nosuch\n", "unknown model 'nosuch'"),
        ("name: x\ntask: mnist\nmodel: lem\nfixed: {dt: 0}\n", "option 'dt'"),
    ],
)
def test_a_bad_spec_is_refused_before_the_heavy_libraries_load(tmp_path, spec, message):
    (tmp_path / "bad.yaml").write_text(spec)
    result = _refuse("sweep", "bad.yaml", cwd=tmp_path)
    assert result["code"] == 2 and message in result["stderr"], result
    assert result["loaded"] == [], result


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--model", "nosuch"], "--model: unknown model 'nosuch'"),
        (["--task", "nosuch"], "--task: unknown task 'nosuch'"),
        (["--lr", "0", "--eps", "-1"], "--lr: input should be greater than 0"),
        (["--task", "pmnist", "--task-option", "perm=1"], "unknown option 'perm'"),
    ],
)
def test_bad_train_flags_are_refused_before_the_heavy_libraries_load(tmp_path, flags, message):
    result = _refuse("train", *flags, cwd=tmp_path)
    assert result["code"] == 2 and message in result["stderr"], result
    assert result["loaded"] == [], result
