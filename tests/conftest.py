from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.datasets import write_cifar10, write_mnist

REAL_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
REPOSITORY = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _no_stray_tracking(monkeypatch):
    """Tests never log to a tracking store they did not choose."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("ARNN_DATA_DIR", raising=False)


@pytest.fixture(scope="session")
def mnist_root(tmp_path_factory) -> Path:
    return write_mnist(tmp_path_factory.mktemp("mnist"))


@pytest.fixture
def cifar_root(tmp_path, monkeypatch) -> Path:
    from torchvision.datasets import CIFAR10

    sums = write_cifar10(tmp_path)
    monkeypatch.setattr(CIFAR10, "train_list", [[n, sums[n]] for n, _ in CIFAR10.train_list])
    monkeypatch.setattr(CIFAR10, "test_list", [[n, sums[n]] for n, _ in CIFAR10.test_list])
    monkeypatch.setattr(CIFAR10, "meta", {**CIFAR10.meta, "md5": sums["batches.meta"]})
    return tmp_path


@pytest.fixture(scope="session")
def real_mnist_root() -> Path:
    if not (REAL_DATA / "MNIST" / "raw" / "train-images-idx3-ubyte").exists():
        pytest.skip(f"the real MNIST is not at {REAL_DATA}")
    return REAL_DATA


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mlflow_server_command(backend: str, artifacts: Path, port: int, workers: int = 1) -> list:
    """`mlflow server` on 127.0.0.1:`port` over the store `backend`."""
    return [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        backend,
        "--artifacts-destination",
        str(artifacts),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real `mlflow server` on 127.0.0.1; yields its http:// tracking URI."""
    folder = tmp_path_factory.mktemp("mlflow-server")
    port = _free_port()
    log = open(folder / "server.log", "w")
    server = subprocess.Popen(
        mlflow_server_command(f"sqlite:///{folder / 'server.db'}", folder / "artifacts", port),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(uri, server, log_path=folder / "server.log")
        yield uri
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
        log.close()


def wait_until_serving(
    url: str, process: subprocess.Popen, timeout: float = 90, log_path: Path | None = None
) -> None:
    """Poll an MLflow server's /health until it answers; fail if the process dies."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            log = log_path.read_text() if log_path else ""
            raise RuntimeError(f"no server at {url}:\n{log}")
        time.sleep(0.5)


def run_arnn(*args: str, cwd: Path, env: dict | None = None, timeout: float = 300):
    """Run the real `arnn` command line in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "arnn", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def only_run(tracking_uri: str, experiment: str = "arnn"):
    """(client, run) of the experiment's one run; fails when it holds another number."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert len(runs) == 1, [r.info.run_id for r in runs]
    return client, runs[0]


def assert_provenance(tags: dict) -> None:
    """The tags that trace a run to its code: the commit of this checkout (whatever folder
    the run ran in), the dirty flag, and the libraries' versions."""
    head = subprocess.run(
        ["git", "-C", str(REPOSITORY), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    assert tags["arnn.git_commit"] == head and tags["mlflow.source.git.commit"] == head
    assert tags["arnn.git_dirty"] in ("true", "false")
    for library in ("arnn", "torch", "ray", "optuna", "mlflow"):
        assert tags[f"arnn.version.{library}"][0].isdigit(), (library, tags)


def pytest_configure(config):
    """Without a GPU, Triton kernels run in its interpreter on the CPU. Set before any
    kernel module is imported: @triton.jit reads it when a kernel is defined."""
    import torch

    if not torch.cuda.is_available():
        os.environ.setdefault("TRITON_INTERPRET", "1")
