"""The head's tracking stack under sweep load: `mlflow server` (4 workers) on a real
PostgreSQL, 64 logger processes x 100 epochs, every point accounted for.

On a 2-core machine SQLite stalled at this load (after 300 s, 29 of 64 runs still RUNNING,
22,542 of 38,400 points stored); PostgreSQL is what cluster.yaml's head runs for that
reason. Run with `make load-test` (installs PostgreSQL and psycopg2 when missing).
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import _free_port, mlflow_server_command, wait_until_serving
from tests.load.logger import METRICS, PARAMS

pytestmark = pytest.mark.slow

PROCESSES = 64
EPOCHS = 100
BUDGET_S = 300  # the loggers' whole time: the stall SQLite showed was past this
REPO = Path(__file__).resolve().parents[2]
# As cluster.yaml's head: each server worker serves up to 40 requests at once (anyio's thread
# pool), and a log_batch holds one pooled connection while it takes a second (MLflow 3.17's
# SqlAlchemyStore.log_batch opens sessions inside its session). With SQLAlchemy's default
# pool (5 + 10 overflow) 15 such requests deadlock a worker until the 30 s pool timeout and
# fail with 400 "QueuePool limit ... reached": measured here, 27 of 64 loggers failed and
# 22,206 of 38,400 points were stored. 10 + 40 = 50 > 40 per worker; 4 x 50 < 250.
SERVER_POOL = {
    "MLFLOW_SQLALCHEMYSTORE_POOL_SIZE": "10",
    "MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW": "40",
}
MAX_CONNECTIONS = 250


def _postgres_bin() -> Path | None:
    """The newest PostgreSQL server binaries Debian installed, or None."""
    found = [
        Path(p).parent
        for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")
        if (Path(p).parent / "pg_ctl").exists() and (Path(p).parent / "psql").exists()
    ]
    return max(found, key=lambda p: int(p.parent.name)) if found else None


def _as_postgres_owner() -> tuple[list[str], str | None]:
    """PostgreSQL refuses to run as root: then run its tools as the `postgres` user."""
    if os.geteuid() != 0:
        return [], None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("running as root and there is no `postgres` user to run PostgreSQL as")
    return ["runuser", "-u", "postgres", "--"], "postgres"


def _stop(process: subprocess.Popen | None, grace: float = 20) -> None:
    """SIGTERM the process's session, then SIGKILL it if it lingers."""
    if process is None or process.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else ""


def test_64_loggers_x_100_epochs_on_postgresql_lose_nothing():
    bin_dir = _postgres_bin()
    if bin_dir is None:
        pytest.skip(
            "PostgreSQL's server binaries are not installed (/usr/lib/postgresql/*/bin); "
            "`make load-test` installs Debian's postgresql"
        )
    pytest.importorskip(
        "psycopg2", reason="the PostgreSQL driver is missing: pip install -e '.[load]'"
    )
    from mlflow.entities import ViewType
    from mlflow.tracking import MlflowClient

    prefix, owner = _as_postgres_owner()
    # Not pytest's tmp_path: its parents are private to root, and `postgres` must reach this.
    root = Path(tempfile.mkdtemp(prefix="arnn-pg-"))
    data, pg_log = root / "data", root / "postgres.log"
    superuser_password, password = secrets.token_hex(16), secrets.token_hex(16)
    (root / "pwfile").write_text(superuser_password + "\n")
    if owner:
        shutil.chown(root, owner)
        shutil.chown(root / "pwfile", owner)
    pg_port, port = _free_port(), _free_port()

    def pg(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [*prefix, *args], capture_output=True, text=True, timeout=timeout, cwd=root
        )
        assert done.returncode == 0, f"{args[0]} failed:\n{done.stdout}\n{done.stderr}"
        return done

    def sql(statement: str) -> None:
        pg(
            str(bin_dir / "psql"),
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            str(root),
            "-p",
            str(pg_port),
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-c",
            statement,
        )

    server = None
    server_log = root / "mlflow-server.log"
    loggers: list[subprocess.Popen] = []
    pg_started = False
    try:
        # A private cluster: the unix socket in `root` (trusted, and only `owner` can reach
        # it), TCP on 127.0.0.1 only, with passwords.
        pg(
            str(bin_dir / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-locale",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            f"--pwfile={root / 'pwfile'}",
            "--no-sync",
        )
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={pg_port} "
            f"-c unix_socket_directories={root} -c max_connections={MAX_CONNECTIONS}"
        )
        pg_started = True
        pg(
            str(bin_dir / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(pg_log),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
        )
        sql(f"CREATE ROLE mlflow LOGIN PASSWORD '{password}'")
        sql("CREATE DATABASE mlflow OWNER mlflow")

        # The driver named: SQLAlchemy 2.1 takes bare postgresql:// to mean psycopg 3.
        backend = f"postgresql+psycopg2://mlflow:{password}@127.0.0.1:{pg_port}/mlflow"
        with open(server_log, "w") as log:
            server = subprocess.Popen(
                mlflow_server_command(backend, root / "artifacts", port, workers=4),
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=root,
                start_new_session=True,
                env={**os.environ, **SERVER_POOL},
            )
        uri = f"http://127.0.0.1:{port}"
        wait_until_serving(uri, server, timeout=240, log_path=server_log)
        client = MlflowClient(uri)
        experiment_id = client.create_experiment("load")

        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
            "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "4",
        }
        started = time.monotonic()
        deadline = time.time() + BUDGET_S
        for index in range(PROCESSES):
            with open(root / f"logger-{index:03d}.log", "w") as out:
                loggers.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-m",
                            "tests.load.logger",
                            uri,
                            experiment_id,
                            str(index),
                            str(EPOCHS),
                            str(deadline),
                        ],
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        cwd=REPO,
                        env=env,
                        start_new_session=True,
                    )
                )
        for logger in loggers:
            try:
                logger.wait(timeout=max(1.0, deadline + 15 - time.time()))
            except subprocess.TimeoutExpired:
                _stop(logger, grace=2)
        wall = time.monotonic() - started
        codes = Counter(logger.returncode for logger in loggers)

        runs = client.search_runs(
            [experiment_id], run_view_type=ViewType.ALL, max_results=PROCESSES * 2
        )
        statuses = Counter(run.info.status for run in runs)
        points = sum(
            len(client.get_metric_history(run.info.run_id, f"m{k}"))
            for run in runs
            for k in range(METRICS)
        )
        params = Counter(len(run.data.params) for run in runs)
        expected = PROCESSES * EPOCHS * METRICS
        print(
            f"\nload test on PostgreSQL {bin_dir.parent.name}: {PROCESSES} loggers x {EPOCHS} "
            f"epochs in {wall:.1f} s; runs {dict(statuses)}; {points} of {expected} metric "
            f"points stored; logger exit codes {dict(codes)}"
        )
        failed = [
            f"logger {i} (exit {p.returncode}): {_tail(root / f'logger-{i:03d}.log', 800)}"
            for i, p in enumerate(loggers)
            if p.returncode != 0
        ][:3]
        context = "\n".join(failed) + f"\nserver log:\n{_tail(server_log)}"
        assert codes == {0: PROCESSES}, context
        assert len(runs) == PROCESSES and statuses == {"FINISHED": PROCESSES}, context
        assert points == expected, context
        assert params == {PARAMS: PROCESSES}, context
    finally:
        for logger in loggers:
            _stop(logger, grace=2)
        _stop(server)
        if pg_started:
            subprocess.run(
                [*prefix, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                capture_output=True,
                timeout=60,
                cwd=root,
            )
        if os.environ.get("ARNN_LOAD_KEEP"):  # for a post-mortem: the logs stay
            print(f"logs kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
