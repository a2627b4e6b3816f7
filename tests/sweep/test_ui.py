from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request

import yaml

from arnn.sweep.driver import sweep
from tests.conftest import _free_port, wait_until_serving


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.load(answer)


def test_arnn_ui_serves_the_sweep_with_its_trials_nested(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "name": "ui",
                "task": "adding",
                "task_options": {"length": 6, "train_size": 128, "test_size": 32},
                "model": "antisymmetric",
                "fixed": {"hidden": 4, "epochs": 1, "val_size": 32},
                "params": {"gated": {"type": "bool"}},
                "sampler": {"type": "grid"},
                "scheduler": {"type": "none"},
            }
        )
    )
    outcome = sweep(str(spec), name="ui", storage_path=str(tmp_path / "ray"))

    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "arnn", "ui", "--port", str(port)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(base, server)
        with urllib.request.urlopen(base + "/", timeout=10) as page:
            assert b"<html" in page.read().lower()
        with urllib.request.urlopen(
            f"{base}/api/2.0/mlflow/experiments/get-by-name?experiment_name=arnn", timeout=10
        ) as answer:
            experiment_id = json.load(answer)["experiment"]["experiment_id"]
        found = _post(f"{base}/api/2.0/mlflow/runs/search", {"experiment_ids": [experiment_id]})
        runs = {
            r["info"]["run_id"]: {t["key"]: t["value"] for t in r["data"].get("tags", [])}
            for r in found["runs"]
        }
        children = [tags for tags in runs.values() if tags.get("arnn.kind") == "trial"]
        assert outcome.parent_run_id in runs and len(children) == 2
        assert all(tags["mlflow.parentRunId"] == outcome.parent_run_id for tags in children)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
