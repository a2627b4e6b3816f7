"""`arnn ui`'s MLflow server: one process group, announced once it answers, stopped with
everything it started.

`mlflow ui` is a process that starts uvicorn. `Server` runs it in a session (so a process
group) of its own: stopping the group stops every process in it, and on Linux the kernel
sends the group's leader SIGTERM when arnn dies for any reason (the parent-death signal),
which MLflow passes on to uvicorn. The server's output is copied to stderr, less what a
user of a server bound to 127.0.0.1 cannot act on, and its last lines are kept to say why
it ended, if it ends before it answers.
"""

from __future__ import annotations

import collections
import ctypes
import errno
import http.client
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping

# MLflow's hint, when no --allowed-hosts is given, to bind every interface for other
# hosts: never for arnn, whose servers bind 127.0.0.1 only.
NOISE = ("[MLflow] Security middleware enabled with default settings",)
# mlflow.server.fastapi_app imports starlette.middleware.wsgi, which Starlette 1.x has
# deprecated: a StarletteDeprecationWarning (a UserWarning) for MLflow's developers, once per
# server process. Named by its message: PYTHONWARNINGS cannot name a category defined in a
# package (it is read before site-packages is importable).
QUIET_WARNINGS = "ignore:starlette.middleware.wsgi is deprecated:UserWarning"
PR_SET_PDEATHSIG = 1  # prctl(2)
START_TIMEOUT = 300.0  # seconds for the server to answer: about 15 s on an idle machine
STOP_GRACE = 10.0  # seconds between SIGTERM and SIGKILL
TAIL_LINES = 10


class ServerFailed(Exception):
    """The server ended, or did not answer, before it served."""


def server_command(tracking_uri: str, host: str, port: int) -> list[str]:
    """`mlflow ui` on `tracking_uri`, bound to host:port, with one uvicorn worker: one
    person's browser needs no more, and it starts in a third of the time of MLflow's four."""
    return [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--backend-store-uri",
        tracking_uri,
        "--registry-store-uri",  # MLflow's default, given so that it does not say so
        tracking_uri,
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        "1",
    ]


def server_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """`environ` for the server: unbuffered output (it goes through a pipe), Starlette's
    deprecation warning off, and, unless `environ` asks for it, no job runner (MLflow's
    GenAI jobs: judges, trace archival; it would start seven more processes)."""
    warnings = ",".join(filter(None, (environ.get("PYTHONWARNINGS"), QUIET_WARNINGS)))
    return {
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        **environ,
        "PYTHONUNBUFFERED": "1",
        "PYTHONWARNINGS": warnings,
    }


def port_in_use(host: str, port: int) -> bool:
    """Whether a server listens on host:port already (probed as uvicorn binds, with
    SO_REUSEADDR, so that connections closed a moment ago do not count)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:  # another problem with the address: uvicorn will say it
            return error.errno == errno.EADDRINUSE
    return False


def answers(url: str) -> bool:
    """Whether the MLflow server at `url` answers GET /health (directly: no proxy)."""
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with direct.open(f"{url}/health", timeout=2) as reply:
            return reply.status == 200
    except (OSError, http.client.HTTPException):
        return False


class ServerOutput(threading.Thread):
    """Copies the server's output to `sink` line by line, less NOISE; keeps the last lines."""

    def __init__(self, stream, sink):
        super().__init__(daemon=True)
        self.stream, self.sink = stream, sink
        self.last: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)

    def run(self) -> None:
        for line in self.stream:
            if line.startswith(NOISE):
                continue
            self.last.append(line.rstrip("\n"))
            self.sink.write(line)
            self.sink.flush()


class Server:
    """with Server(command, env, url) as server: the server's process group, from its start
    to its stop (SIGTERM, then SIGKILL for what is left after STOP_GRACE; at once at a second
    Ctrl-C or SIGTERM during the grace)."""

    def __init__(self, command: list[str], env: Mapping[str, str], url: str):
        self.command, self.env, self.url = command, dict(env), url

    def __enter__(self) -> Server:
        self.process = subprocess.Popen(
            self.command,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,
            preexec_fn=_dies_with_parent(),
        )
        self.output = ServerOutput(self.process.stdout, sys.stderr)
        self.output.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def wait_until_answering(self, timeout: float = START_TIMEOUT) -> None:
        """Return once the server answers at `url`; ServerFailed if it ends first, or if
        `timeout` seconds pass."""
        deadline = time.monotonic() + timeout
        while not answers(self.url):
            if self.process.poll() is not None:
                raise ServerFailed(self._ended())
            if time.monotonic() > deadline:
                raise ServerFailed(
                    f"the MLflow server did not answer on {self.url} in {timeout:.0f} s"
                )
            time.sleep(0.25)
        if self.process.poll() is not None:  # another server answered there
            raise ServerFailed(self._ended())

    def wait(self) -> int:
        """The server's exit status, once it ends by itself."""
        return self.process.wait()

    def stop(self) -> None:
        group = self.process.pid  # the leader of its own session: its group id is its pid
        try:
            _signal_group(group, signal.SIGTERM)
            gone = _group_ends(self.process, STOP_GRACE)
        except KeyboardInterrupt:  # asked again to stop (arnn.interrupt.Interrupted): now
            gone = False
        if not gone:
            _signal_group(group, signal.SIGKILL)
            _group_ends(self.process, STOP_GRACE)
        self.output.join(timeout=2)

    def _ended(self) -> str:
        self.output.join(timeout=2)
        last = "".join(f"\n  {line}" for line in self.output.last)
        return (
            f"the MLflow server exited with code {self.process.returncode} before it "
            f"answered on {self.url}; its last lines:{last or ' (none)'}"
        )


def _dies_with_parent() -> Callable[[], None] | None:
    """A preexec function that has Linux send the child SIGTERM when this process dies (by
    SIGKILL or a crash, where no stop runs); None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)  # loaded before the fork: the child only calls

    def preexec() -> None:
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM))

    return preexec


def _signal_group(group: int, signum: int) -> None:
    try:
        os.killpg(group, signum)
    except ProcessLookupError:  # every process of it has ended
        pass


def _group_ends(leader: subprocess.Popen, timeout: float) -> bool:
    """Whether every process of `leader`'s group has ended within `timeout` seconds (the
    leader reaped here; the others, orphaned when it ends, by init)."""
    deadline = time.monotonic() + timeout
    while True:
        leader.poll()
        try:
            os.killpg(leader.pid, 0)
        except ProcessLookupError:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
