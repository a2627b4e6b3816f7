"""The one place that starts or connects to Ray, and why each setting is what it is.

`--address` takes four shapes (`check_address` refuses anything else, in one line):

- ``local``: an embedded, single-machine Ray that listens on 127.0.0.1 only. Ray gives
  each node one IP address and binds its servers by it: a loopback node IP puts the GCS,
  the raylet, every worker's gRPC server and the runtime-env agent on 127.0.0.1, any
  other IP puts the gRPC servers on every interface (``::``) and the runtime-env agent on
  the machine's network address. `ray.init(_node_ip_address="127.0.0.1")` does not help:
  ray.init turns a loopback address into the machine's network address
  (`services.resolve_ip_for_localhost`), unless `ray_constants.ENABLE_RAY_CLUSTER` is off,
  the switch that `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0` sets when Ray is imported (the
  Windows/macOS default, so that a laptop's Ray stays on loopback). Ray is imported long
  before a sweep starts, so `_loopback_stays_loopback` turns that switch off for the
  length of ray.init, and sets the variable for the processes ray.init starts (they get
  the node IP on their command line; the variable covers any that resolve an address).
- ``HOST:PORT``: the GCS of a running cluster. The same switch is off while connecting,
  so that a loopback HOST (a cluster started on 127.0.0.1) is dialled on loopback rather
  than on the machine's network address, where nothing listens; any other HOST is used
  as given. A closed port would keep ray.init retrying for minutes, so the port is
  tried first, for `PROBE_TIMEOUT_S`.
- ``auto``: the cluster that `RAY_ADDRESS`, the address file of the last `ray start`, or
  a running GCS names; found as ray.init would (loopback kept), then tried like HOST:PORT,
  since a stale address file would also keep ray.init retrying for minutes.
- ``ray://HOST:PORT``: a Ray Client server (needs ``ray[client]``). The port is tried
  first as above; a port that answers but is no Ray Client server fails after the
  client's own retries, shortened through `RAY_CLIENT_INITIAL_CONNECTION_TIMEOUT_S` and
  `RAY_CLIENT_MAX_CONNECTION_TIMEOUT_S` (read when Ray's client module is first
  imported; defaults only, so an explicit setting wins) to 5 + 10 + 10 s.

Every failure to start or reach Ray is a `UsageError` of one line naming the address and
the cause, never a traceback.

Settings kept for every shape:
- ``log_to_driver=False``: trials log to MLflow; their stdout would bury the progress table;
- ``configure_logging=True, logging_level="ERROR"``: Ray's own INFO/WARNING lines likewise;
- ``include_dashboard=False`` (local only): nobody looks at it, and it is one more server;
- ``RAY_AIR_NEW_OUTPUT=0``: the legacy Tune output honours ``verbose=0``;
- Optuna at WARNING: otherwise it logs one INFO line per trial.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import warnings
from collections.abc import Iterator

from arnn.errors import UsageError

CLIENT_PREFIX = "ray://"
PROBE_TIMEOUT_S = 5.0
_CLIENT_TIMEOUTS = {  # Ray's defaults are 5 and 30 (5 + 10 + 15 s over three tries)
    "RAY_CLIENT_INITIAL_CONNECTION_TIMEOUT_S": "5",
    "RAY_CLIENT_MAX_CONNECTION_TIMEOUT_S": "10",
}
_CLUSTER_SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
_SHAPES = "'local', 'auto', ray://HOST:PORT or HOST:PORT"


def check_address(address: str) -> None:
    """Refuse, in one line, an `--address` that is none of the four shapes."""
    if address in ("local", "auto"):
        return
    rest = address[len(CLIENT_PREFIX) :] if address.startswith(CLIENT_PREFIX) else address
    if _host_port(rest) is None:
        raise UsageError(f"--address: {_SHAPES}, got {address!r}")


def connect(address: str) -> None:
    """Start the embedded Ray (``local``) or connect to a running one; see the module."""
    check_address(address)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the legacy output honours verbose=0
    kwargs = dict(log_to_driver=False, configure_logging=True, logging_level="ERROR")
    if address == "local":
        _init(address, "cannot start a local Ray", include_dashboard=False, **kwargs)
        return
    if address.startswith(CLIENT_PREFIX):
        _probe(address, _host_port(address[len(CLIENT_PREFIX) :]))
        for name, value in _CLIENT_TIMEOUTS.items():
            os.environ.setdefault(name, value)
        _init(address, f"cannot reach {address}", loopback=False, **kwargs)
        return
    _probe(address, _host_port(address) if address != "auto" else _auto_address())
    _init(address, f"cannot reach {address}", **kwargs)


def disconnect() -> None:
    """Leave Ray: the embedded one stops with its processes; a cluster stays up."""
    import ray

    ray.shutdown()


def _auto_address() -> tuple[str, int] | None:
    """The GCS that ray.init("auto") would dial ($RAY_ADDRESS, the address file of the last
    `ray start`, a running GCS); None where Ray would not dial a HOST:PORT itself."""
    from ray._private import services

    try:
        with _loopback_stays_loopback():
            found = services.canonicalize_bootstrap_address("auto")
    except Exception as error:
        raise UsageError(f"--address: cannot reach auto: {_one_line(error)}") from None
    return _host_port(found) if found else None


def _init(address: str, failure: str, loopback: bool = True, **kwargs) -> None:
    import ray

    try:
        with warnings.catch_warnings(), _quiet_ray_client():
            warnings.simplefilter("ignore")  # the client's multi-line "timed out" warning
            if loopback:
                with _loopback_stays_loopback():
                    ray.init(address=address, **kwargs)
            else:
                ray.init(address=address, **kwargs)
    except UsageError:
        raise
    except Exception as error:
        with contextlib.suppress(Exception):
            ray.shutdown()
        raise UsageError(f"--address: {failure}: {_one_line(error)}") from None


@contextlib.contextmanager
def _loopback_stays_loopback() -> Iterator[None]:
    """While ray.init runs, Ray takes 127.0.0.1 / localhost / ::1 at its word, and a new
    node's IP is loopback: RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, which Ray reads when it is
    imported, hence the module attribute here; the processes ray.init starts inherit the
    variable, and their children (workers) from them."""
    from ray._private import ray_constants

    before = ray_constants.ENABLE_RAY_CLUSTER, os.environ.get(_CLUSTER_SWITCH)
    ray_constants.ENABLE_RAY_CLUSTER = False
    os.environ[_CLUSTER_SWITCH] = "0"  # for the processes ray.init starts
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = before[0]
        if before[1] is None:
            os.environ.pop(_CLUSTER_SWITCH, None)
        else:
            os.environ[_CLUSTER_SWITCH] = before[1]


@contextlib.contextmanager
def _quiet_ray_client() -> Iterator[None]:
    """The Ray Client logs its retries; the UsageError says what went wrong."""
    quiet = logging.getLogger("ray.util.client")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        quiet.setLevel(level)


def _probe(address: str, host_port: tuple[str, int] | None) -> None:
    """Fail fast and plainly when nothing accepts connections at HOST:PORT."""
    if host_port is None:
        return
    try:
        with socket.create_connection(host_port, timeout=PROBE_TIMEOUT_S):
            pass
    except OSError as error:
        cause = error.strerror or str(error) or type(error).__name__
        if isinstance(error, TimeoutError):
            cause = f"no answer within {PROBE_TIMEOUT_S:g} s"
        raise UsageError(f"--address: cannot reach {address}: {cause}") from None


def _host_port(text: str) -> tuple[str, int] | None:
    """HOST:PORT or [IPV6]:PORT as (host, port), else None."""
    if text.startswith("["):
        host, bracket, port = text[1:].partition("]:")
        if not bracket:
            return None
    else:
        host, colon, port = text.rpartition(":")
        if not colon or ":" in host:
            return None
    if not host or any(c.isspace() or c in "/[]@?#" for c in host):
        return None
    if not port.isascii() or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return host, int(port)


def _one_line(error: BaseException) -> str:
    """The first line of the message, and its last where the first only announces it
    (the Ray Client's "Initialization failure from server:" and a server traceback)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    if len(lines) > 1 and lines[0].endswith(":"):
        return f"{lines[0]} {lines[-1]}"
    return lines[0]
