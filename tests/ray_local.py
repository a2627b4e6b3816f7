"""Ray clusters for tests that listen on 127.0.0.1 only, like `arnn sweep --address local`.

A node gets its servers' address from `node_ip_address`; left out, Ray uses this machine's
network address and binds its gRPC servers on every interface. Given to
`Cluster.add_node` (through RayParams, which ray.init would rewrite but Cluster does not),
127.0.0.1 keeps the GCS, raylet, workers and agents on loopback, and `cluster.address` is
then ``127.0.0.1:PORT``, which `arnn.sweep.ray_runtime.connect` dials on loopback.

    cluster = local_cluster(num_cpus=0)
    cluster.add_node(num_cpus=1)   # on 127.0.0.1 as well: this Cluster fills it in
    ...
    cluster.shutdown()

With a plain `ray.cluster_utils.Cluster`, every `add_node` call needs
``node_ip_address="127.0.0.1"`` itself, and RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 in the
environment while it runs if the node starts a Ray Client server (`ray_client_server_port`):
that server resolves the GCS address 127.0.0.1 to this machine's network address otherwise.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
from collections.abc import Iterator

import psutil
from ray.cluster_utils import Cluster

LOOPBACK = "127.0.0.1"
_CLUSTER_SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


class LoopbackCluster(Cluster):
    """A `Cluster` whose every node (head and workers) is on 127.0.0.1 unless told."""

    def add_node(self, wait: bool = True, **node_args):
        node_args.setdefault("node_ip_address", LOOPBACK)
        with _loopback_stays_loopback():
            return super().add_node(wait=wait, **node_args)


@contextlib.contextmanager
def _loopback_stays_loopback() -> Iterator[None]:
    """The node's processes inherit RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, so that those that
    resolve an address (the Ray Client server dialling the GCS at 127.0.0.1:PORT) keep
    loopback as loopback instead of turning it into this machine's network address."""
    before = os.environ.get(_CLUSTER_SWITCH)
    os.environ[_CLUSTER_SWITCH] = "0"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(_CLUSTER_SWITCH, None)
        else:
            os.environ[_CLUSTER_SWITCH] = before


def local_cluster(**head_args) -> Cluster:
    """A started head node on 127.0.0.1; `head_args` go to `Cluster.add_node` (num_cpus,
    resources, ...). `add_node` on the result puts more nodes on 127.0.0.1 too."""
    return LoopbackCluster(initialize_head=True, head_node_args=head_args)


def is_loopback(host: str) -> bool:
    address = ipaddress.ip_address(host.split("%")[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1, a dual-stack socket on loopback
    return address.is_loopback


def ray_processes(root: psutil.Process, session_dir: str) -> dict[int, psutil.Process]:
    """`root`, its descendants, and whatever names Ray's session folder (with its
    descendants): every process of the Ray that `root` started."""
    found = {root.pid: root, **{p.pid: p for p in root.children(recursive=True)}}
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if any(session_dir in arg for arg in proc.info["cmdline"] or ()):
                found[proc.pid] = proc
                found.update({p.pid: p for p in proc.children(recursive=True)})
        except psutil.Error:
            pass
    return found


def listeners_of(procs: dict[int, psutil.Process]) -> list[tuple[str, int, str, int]]:
    """(process name, pid, address, port) of every listening TCP socket."""
    found = []
    for proc in procs.values():
        try:
            name = proc.name()
            for conn in proc.net_connections(kind="inet"):
                if conn.status == psutil.CONN_LISTEN:
                    found.append((name, proc.pid, conn.laddr.ip, conn.laddr.port))
        except psutil.Error:  # a worker that has just exited
            pass
    return sorted(found)
