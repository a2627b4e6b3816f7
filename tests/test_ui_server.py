"""`arnn ui` as a person runs it: a real `arnn ui` process (and the real MLflow server it
starts) on a real SQLite store, its console read line by line, stopped by a signal sent
to the `arnn` process alone; and the view of the runs table that it keeps."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from arnn.ui_server import NOISE, START_TIMEOUT, STOP_GRACE, answers
from tests.conftest import _free_port, run_arnn

READY = "(Ctrl-C stops it)"  # the line with the URL
START = START_TIMEOUT  # seconds for the server to answer
STOP = 2 * STOP_GRACE + 10  # seconds for `arnn ui` and all it started to end after a signal


class Console:
    """A running `arnn ui` on a free port: its stdout and stderr as one stream, read
    line by line by a thread, so that a test can wait for a line with a deadline."""

    def __init__(self, folder: Path, env: dict | None = None):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "arnn", "ui", "--port", str(self.port)],
            cwd=folder,
            env={**os.environ, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own group: a signal from here reaches it alone
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self._queue.put(line)
        self._queue.put(None)

    def next_line(self, deadline: float) -> str | None:
        """The next line (kept in .lines), None at the end of the output."""
        line = self._queue.get(timeout=max(deadline - time.monotonic(), 0.01))
        if line is not None:
            self.lines.append(line)
        return line

    def read_until(self, text: str, timeout: float = START) -> str:
        """The first line that holds `text`; fails when the output ends before it."""
        deadline = time.monotonic() + timeout
        while (line := self.next_line(deadline)) is not None:
            if text in line:
                return line
        pytest.fail(f"`arnn ui` ended before {text!r}:\n{''.join(self.lines)}")

    def read_rest(self, timeout: float = STOP) -> str:
        """All its output, once it has ended."""
        deadline = time.monotonic() + timeout
        while self.next_line(deadline) is not None:
            pass
        return "".join(self.lines)

    def read_while_not_answering(self, timeout: float = START) -> None:
        """Read its output until its server answers."""
        deadline = time.monotonic() + timeout
        while not answers(self.url):
            assert time.monotonic() < deadline, "".join(self.lines)
            try:
                self.next_line(time.monotonic() + 0.5)
            except queue.Empty:
                pass

    def descendants(self) -> list[psutil.Process]:
        """Every process that `arnn ui` started and that is alive now."""
        try:
            return psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def kill_all(self, descendants: list[psutil.Process]) -> None:
        """Leave nothing behind, whatever a test found."""
        self.process.kill()
        for process in descendants:
            try:
                process.kill()
            except psutil.NoSuchProcess:
                pass
        self.process.wait(timeout=STOP)


@dataclass
class Started:
    console: Console
    connected_at_url: bool  # a TCP connect to its port, made the moment the URL came


@pytest.fixture(scope="module")
def started(tmp_path_factory):
    """`arnn ui` on an empty store, read until its URL and until its server answers."""
    console = Console(tmp_path_factory.mktemp("ui-console"))
    try:
        console.read_until(READY)
        try:
            socket.create_connection(("127.0.0.1", console.port), timeout=2).close()
            connected = True
        except OSError:
            connected = False
        console.read_while_not_answering()
        yield Started(console, connected)
    finally:
        console.kill_all(console.descendants())  # the server, which the fixture left running


def test_the_url_comes_once_the_server_answers_and_starting_before_it(started):
    lines = started.console.lines
    ready = next(i for i, line in enumerate(lines) if READY in line)
    assert started.connected_at_url, "".join(lines)
    assert any(line.startswith("starting the MLflow UI on ") for line in lines[:ready])


def test_the_console_holds_no_noise_a_user_cannot_act_on(started):
    console = "".join(started.console.lines)  # up to its URL and its server answering
    assert "StarletteDeprecationWarning" not in console and "is deprecated" not in console
    # MLflow's hint to bind every interface, dropped: arnn binds 127.0.0.1 only.
    assert NOISE[0] not in console and "To allow connections from other hosts" not in console
    assert "Uvicorn running on http://127.0.0.1:" in console  # the server's own log shows


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_to_arnn_ui_stops_everything_it_started(tmp_path, signum):
    console = Console(tmp_path)
    started = []
    try:
        console.read_until(READY)
        console.read_while_not_answering()
        started = console.descendants()
        assert started, "no server process"

        os.kill(console.process.pid, signum)
        assert console.process.wait(timeout=STOP) == 128 + signum  # as arnn train, sweep
        _, alive = psutil.wait_procs(started, timeout=STOP)
        assert not alive, [p.cmdline() for p in alive]
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", console.port), timeout=2)
        assert f"stopped by {signal.Signals(signum).name}" in console.read_rest()
    finally:
        console.kill_all(started)


def test_a_server_that_ends_before_it_answers_is_said_with_its_last_lines(tmp_path):
    # MLflow refuses a trace archival config file that does not exist, as it starts
    env = {"MLFLOW_TRACE_ARCHIVAL_CONFIG": str(tmp_path / "missing.yaml")}
    done = run_arnn("ui", "--port", str(_free_port()), cwd=tmp_path, env=env, timeout=STOP + START)
    assert done.returncode == 1, done.stdout + done.stderr
    assert READY not in done.stdout
    (said,) = [line for line in done.stderr.splitlines() if line.startswith("arnn ui: ")]
    assert "the MLflow server exited with code 2 before it answered" in said
    assert "missing.yaml" in done.stderr.split(said)[1]  # MLflow's own words, after it


def test_a_port_in_use_is_refused_before_anything_starts(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_arnn("ui", "--port", str(port), cwd=tmp_path, timeout=STOP + START)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip() == (
        f"arnn: error: --port: 127.0.0.1:{port} is in use (another arnn ui?); stop that, "
        "or choose another --port"
    )
    assert "starting" not in done.stdout


def test_the_view_arnn_ui_keeps_holds_score_outcome_and_what_each_sweep_samples(tmp_path):
    from mlflow.tracking import MlflowClient

    from arnn.tracking import RUNS_VIEW_TAG, save_runs_view, ui_url

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("arnn")
    assert "orderByKey=" in ui_url(uri, "arnn")  # no view yet: sorted by name by the URL
    for searched in ("gated,lr", "-", "lr,eps"):  # a sweep that samples nothing logs "-"
        sweep = client.create_run(experiment, tags={"arnn.kind": "sweep"})
        client.log_param(sweep.info.run_id, "searched", searched)
        time.sleep(0.01)  # distinct start times: the first sweep's names come first

    save_runs_view(uri, "arnn")
    tag = client.get_experiment(experiment).tags[RUNS_VIEW_TAG]
    envelope = json.loads(tag)  # the envelope MLflow's UI reads (name, times, state)
    assert envelope["name"] == "arnn trials" and envelope["createdAt"] > 0
    state = json.loads(envelope["state"])
    assert state["orderByKey"] == "tags.`mlflow.runName`" and state["orderByAsc"] is True
    assert state["selectedColumns"] == [
        "metrics.`trial_score`",
        "tags.`arnn.status`",
        "params.`sampled.gated`",
        "params.`sampled.lr`",
        "params.`sampled.eps`",
    ]
    assert ui_url(uri, "arnn", base="http://127.0.0.1:5001") == (
        f"http://127.0.0.1:5001/#/experiments/{experiment}/runs"
        "?viewStateShareKey=arnn&workflowType=machine_learning"
    )
    save_runs_view(uri, "arnn")  # nothing new: the tag stays as it is
    assert client.get_experiment(experiment).tags[RUNS_VIEW_TAG] == tag
