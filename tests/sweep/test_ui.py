"""`arnn ui` after a real sweep: the MLflow REST API, and the pages a person sees, rendered
by a real headless Chromium (Debian's package, which `make test` installs)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.request

import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.conftest import _free_port, run_arnn, wait_until_serving

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.load(answer)


def _rendered(url: str, tmp_path) -> str:
    """The page's DOM after its scripts ran, as headless Chromium renders it."""
    done = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--user-data-dir={tmp_path / 'chromium'}",
            "--virtual-time-budget=20000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """A grid of two trials (gated or not) by the real `arnn sweep`, and `arnn ui` on it:
    (what the sweep printed, the UI's address, the UI's process, the folder)."""
    tmp_path = tmp_path_factory.mktemp("ui")
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
    done = run_arnn("sweep", str(spec), "--name", "ui", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "arnn", "ui", "--port", str(port)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(base, server)
        yield done.stdout, base, server, tmp_path
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def test_arnn_ui_serves_the_sweep_with_its_trials_nested(swept):
    _, base, _, _ = swept
    with urllib.request.urlopen(
        f"{base}/api/2.0/mlflow/experiments/get-by-name?experiment_name=arnn", timeout=10
    ) as answer:
        experiment = json.load(answer)["experiment"]
    tags = {t["key"]: t["value"] for t in experiment.get("tags", [])}
    assert tags["mlflow.experimentKind"] == "custom_model_development"  # model training
    found = _post(
        f"{base}/api/2.0/mlflow/runs/search", {"experiment_ids": [experiment["experiment_id"]]}
    )
    runs = {
        r["info"]["run_id"]: {t["key"]: t["value"] for t in r["data"].get("tags", [])}
        for r in found["runs"]
    }
    (parent,) = [run_id for run_id, tags in runs.items() if tags.get("arnn.kind") == "sweep"]
    children = [tags for tags in runs.values() if tags.get("arnn.kind") == "trial"]
    assert len(children) == 2
    assert all(tags["mlflow.parentRunId"] == parent for tags in children)


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium: `make test` installs Debian's")
def test_the_printed_urls_open_on_the_runs_and_the_trials_names_in_a_browser(swept):
    printed, base, server, tmp_path = swept
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("arnn")
    runs = client.search_runs([experiment.experiment_id])
    (parent,) = [r for r in runs if r.data.tags["arnn.kind"] == "sweep"]
    trials = sorted(r.info.run_name for r in runs if r.data.tags["arnn.kind"] == "trial")
    assert trials == ["t01", "t02 gated"] or trials == ["t01 gated", "t02"], trials

    # `arnn sweep` prints its parent run's page (as it starts, and again at the end of its
    # summary): its trials are listed there by name
    first_url, sweep_url = re.findall(r"then (http://\S+)", printed)
    assert first_url == sweep_url and printed.strip().splitlines()[-1].endswith(sweep_url)
    assert sweep_url.endswith(f"/runs/{parent.info.run_id}?workflowType=machine_learning")
    page = _rendered(re.sub(r"^http://[^/]+", base, sweep_url), tmp_path)
    assert "Child runs" in page and parent.info.run_name in page
    for name in trials:
        assert f">{name}<" in page, name

    # `arnn ui` prints the runs table, in Model training mode, with the sweep's row and
    # its trials' rows in it, by name (not collapsed under the sweep)
    ui_line = server.stdout.readline()
    (ui_url,) = re.findall(r"(http://\S+workflowType=machine_learning)", ui_line)
    page = _rendered(ui_url, tmp_path)
    assert ">Runs<" in page and "<strong>3</strong> matching runs" in page
    assert 'aria-label="Sort: Run Name"' in page
    assert f">{parent.info.run_name}<" in page
    for name in trials:
        assert f">{name}<" in page, name
    assert "No data available" not in page  # not the GenAI overview
