"""Downloads into one data root from several processes at once, and what an interrupted
download leaves behind, against a real HTTP server on 127.0.0.1 serving generated MNIST
.gz files, through torchvision's own MNIST class (its mirrors and checksums pointed at the
server)."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import multiprocessing
import threading
import time
import traceback
from collections import Counter
from pathlib import Path

import pytest

from arnn.errors import UsageError
from arnn.tasks import create_task
from arnn.tasks.images import MNIST_FILES
from tests.datasets import write_mnist

PROCESSES = 4


class _MnistServer:
    """Serves <folder>/*.gz; counts GET requests per file; answers each after `delay`
    seconds, so that downloads started together overlap.

    torchvision asks for each file twice per download: first a GET whose body it does not
    read, to follow redirects (it sends a header "Method: HEAD", which changes nothing),
    then the GET that downloads. `gets` counts those, `probes` the first kind."""

    def __init__(self, folder: Path, delay: float):
        self.gets: Counter[str] = Counter()
        self.probes: Counter[str] = Counter()
        gets, probes, lock = self.gets, self.probes, threading.Lock()

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self):
                with lock:
                    probe = self.headers.get("Method") == "HEAD"
                    (probes if probe else gets)[self.path.lstrip("/")] += 1
                time.sleep(delay)
                super().do_GET()

            def log_message(self, *args):
                pass

        handler = functools.partial(Handler, directory=str(folder))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def served(tmp_path) -> tuple[Path, Path, dict[str, str]]:
    """(folder of .gz files to serve, root holding the same MNIST uncompressed, the md5 of
    each .gz)."""
    source = write_mnist(tmp_path / "source", train=300, test=100)
    folder = tmp_path / "served"
    folder.mkdir()
    sums = {}
    for name in MNIST_FILES:
        data = gzip.compress((source / "MNIST" / "raw" / name).read_bytes(), mtime=0)
        (folder / f"{name}.gz").write_bytes(data)
        sums[f"{name}.gz"] = hashlib.md5(data).hexdigest()
    return folder, source, sums


def _point_mnist_at(url: str, sums: dict[str, str]) -> None:
    from torchvision.datasets import MNIST

    MNIST.mirrors = [url]
    MNIST.resources = [(name, sums[name]) for name, _ in MNIST.resources]


def _fingerprint(splits) -> tuple[str, ...]:
    return tuple(
        hashlib.sha256(t.numpy().tobytes()).hexdigest()
        for split in splits
        for t in (split.inputs, split.targets)
    )


def _load_in_child(url, sums, root, barrier, results):
    """One trial starting: torchvision's MNIST pointed at the server (the class attributes
    a fresh process has), then the task's real load, all processes released together."""
    try:
        _point_mnist_at(url, sums)
        task = create_task("mnist")
        barrier.wait(timeout=60)
        results.put(("ok", _fingerprint(task.load(Path(root), download=True))))
    except BaseException:
        results.put(("error", traceback.format_exc()))


def _leftovers(root: Path) -> list[str]:
    """Anything a download would leave that is not the dataset or the lock file."""
    return sorted(
        str(p.relative_to(root))
        for p in root.rglob("*")
        if any(word in p.name for word in ("partial", "tmp", "temp"))
    )


def _expected_files() -> set[str]:
    return {*MNIST_FILES, *(f"{name}.gz" for name in MNIST_FILES)}


def test_processes_starting_at_once_download_each_file_once_and_read_the_same_data(
    served, tmp_path
):
    folder, source, sums = served
    expected = _fingerprint(create_task("mnist").load(source, download=False))
    root = tmp_path / "data" / "shared-root"  # does not exist yet
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(PROCESSES), context.Queue()
    with _MnistServer(folder, delay=0.15) as server:
        children = [
            context.Process(
                target=_load_in_child, args=(server.url, sums, str(root), barrier, results)
            )
            for _ in range(PROCESSES)
        ]
        for child in children:
            child.start()
        answers = [results.get(timeout=120) for _ in children]
        for child in children:
            child.join(timeout=30)
    errors = [text for status, text in answers if status != "ok"]
    assert not errors, errors[0]
    assert [fingerprint for _, fingerprint in answers] == [expected] * PROCESSES
    assert dict(server.gets) == {name: 1 for name in sums}, server.gets
    assert dict(server.probes) == {name: 1 for name in sums}, server.probes
    assert {p.name for p in (root / "MNIST" / "raw").iterdir()} == _expected_files()
    assert _leftovers(root) == []


def test_a_truncated_archive_left_in_raw_is_fetched_again(served, tmp_path, monkeypatch):
    """What an interrupted torchvision download leaves: an archive cut short under its
    final name, nothing extracted. Its checksum fails; it is fetched again, once."""
    from torchvision.datasets import MNIST

    folder, source, sums = served
    root = tmp_path / "data"
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    whole = (folder / "train-images-idx3-ubyte.gz").read_bytes()
    (raw / "train-images-idx3-ubyte.gz").write_bytes(whole[: len(whole) // 2])
    with _MnistServer(folder, delay=0.0) as server:
        monkeypatch.setattr(MNIST, "mirrors", [server.url])
        monkeypatch.setattr(MNIST, "resources", [(n, sums[n]) for n, _ in MNIST.resources])
        loaded = create_task("mnist").load(root, download=True)
    assert dict(server.gets) == {name: 1 for name in sums}, server.gets
    assert dict(server.probes) == {name: 1 for name in sums}, server.probes
    assert _fingerprint(loaded) == _fingerprint(create_task("mnist").load(source, download=False))
    assert (raw / "train-images-idx3-ubyte.gz").read_bytes() == whole
    assert {p.name for p in raw.iterdir()} == _expected_files()
    assert _leftovers(root) == []


def test_a_truncated_extracted_file_is_one_line_saying_it_cannot_be_read(
    served, tmp_path, monkeypatch
):
    """torchvision checks no checksum of MNIST's extracted files: one cut short (an
    extraction interrupted) is never taken for the data set, nor for a missing one."""
    from torchvision.datasets import MNIST

    folder, source, sums = served
    root = tmp_path / "data"
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in MNIST_FILES:
        (raw / name).write_bytes((source / "MNIST" / "raw" / name).read_bytes())
    images = (raw / "train-images-idx3-ubyte").read_bytes()
    (raw / "train-images-idx3-ubyte").write_bytes(images[: len(images) - 1000])
    with _MnistServer(folder, delay=0.0) as server:
        monkeypatch.setattr(MNIST, "mirrors", [server.url])
        monkeypatch.setattr(MNIST, "resources", [(n, sums[n]) for n, _ in MNIST.resources])
        for download in (True, False):
            with pytest.raises(UsageError) as raised:
                create_task("mnist").load(root, download=download)
            message = str(raised.value)
            assert "\n" not in message, message
            assert f"MNIST in {raw} cannot be read" in message, message
            assert "delete them to download again" in message, message
    assert not server.gets and not server.probes
