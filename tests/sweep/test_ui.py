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
from html.parser import HTMLParser

import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.conftest import _free_port, run_arnn

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
            "--window-size=1600,1000",  # a laptop's screen: the table renders what fits
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


class _GridCells(HTMLParser):
    """The text of each cell of a rendered runs table (MLflow's ag-grid), by the run's id
    (the row's row-id) and the column's id (its col-id: metrics.`trial_score`, ...)."""

    def __init__(self, page: str):
        super().__init__()
        self.cells: dict[tuple[str, str], str] = {}
        self._row = self._column = None
        self._depth, self._column_depth = 0, -1
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        if tag != "div":
            return
        self._depth += 1
        found = dict(attrs)
        if found.get("role") == "row":
            self._row = found.get("row-id")
        elif found.get("role") == "gridcell" and self._column is None:
            self._column, self._column_depth = found.get("col-id"), self._depth
            self.cells[self._row, self._column] = ""

    def handle_endtag(self, tag):
        if tag != "div":
            return
        if self._depth == self._column_depth:
            self._column, self._column_depth = None, -1
        self._depth -= 1

    def handle_data(self, data):
        if self._column is not None:
            self.cells[self._row, self._column] += data


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """A grid of two trials (gated or not) by the real `arnn sweep`, and `arnn ui` on it:
    (what the sweep printed, the UI's address, the line with the URL it printed, the
    folder)."""
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
        ui_line = server.stdout.readline()  # "starting ...": the URL comes once it serves
        while ui_line and "(Ctrl-C stops it)" not in ui_line:
            ui_line = server.stdout.readline()
        assert ui_line, "`arnn ui` ended before it printed its URL"
        yield done.stdout, base, ui_line, tmp_path
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
    printed, base, ui_line, tmp_path = swept
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
    (ui_url,) = re.findall(r"(http://\S+workflowType=machine_learning)", ui_line)
    page = _rendered(ui_url, tmp_path)
    assert ">Runs<" in page and "<strong>3</strong> matching runs" in page
    assert 'aria-label="Sort: Run Name"' in page
    assert f">{parent.info.run_name}<" in page
    for name in trials:
        assert f">{name}<" in page, name
    assert "No data available" not in page  # not the GenAI overview

    # ... in arnn's view of it: each trial's score, outcome and sampled value in its row
    for header in ("trial_score", "arnn.status", "sampled.gated"):
        assert f'data-testid="sort-header-{header}"' in page, header
    cells = _GridCells(page).cells
    for trial in (r for r in runs if r.data.tags["arnn.kind"] == "trial"):
        row = trial.info.run_id
        # the table rounds a metric to 3 decimals or 4 significant digits (formatMetric)
        score = float(cells[row, "metrics.`trial_score`"])
        assert score == pytest.approx(trial.data.metrics["trial_score"], rel=1e-3, abs=5e-4)
        assert cells[row, "tags.`arnn.status`"] == trial.data.tags["arnn.status"] == "finished"
        assert cells[row, "params.`sampled.gated`"] == trial.data.params["sampled.gated"]
