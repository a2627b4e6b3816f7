"""Sweeps on a real local Ray cluster, logging to real MLflow stores."""

from __future__ import annotations

import glob
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import yaml
from mlflow.tracking import MlflowClient

from arnn.sweep.driver import sweep
from tests.conftest import run_arnn
from tests.datasets import write_broken_mnist, write_mnist

ADDING = {"length": 10, "train_size": 512, "test_size": 64}


def _spec(tmp_path: Path, **changes) -> Path:
    spec = {
        "name": "t",
        "task": "adding",
        "task_options": ADDING,
        "model": "antisymmetric",
        "fixed": {"hidden": 8, "epochs": 3, "val_size": 64, "batch_size": 64, "eps": 0.5},
        "params": {
            "gated": {"type": "bool"},
            "lr": {"type": "categorical", "choices": [0.01, 1.0e20]},  # the second diverges
        },
        "sampler": {"type": "grid"},
        "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 2},
        "max_concurrent": 2,
        "resources": {"cpu": 1},
        "metric": "val_loss",
        "mode": "min",
        **changes,
    }
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _runs(uri: str, experiment: str = "arnn"):
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("arnn.kind") == "sweep"]
    children = [r for r in runs if r.data.tags.get("arnn.kind") == "trial"]
    return client, parents, children


def _study(storage: Path, name: str) -> optuna.Study:
    """The Optuna study as Ray saved it with the sweep's searcher state."""
    (path,) = glob.glob(str(storage / name / "searcher-state-*.pkl"))
    with open(path, "rb") as f:
        state = pickle.load(f)
    return state["_ot_study"] if isinstance(state, dict) else state[0]


def test_a_sweep_records_every_trial_nested_under_its_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    outcome = sweep(str(_spec(tmp_path)), name="grid", storage_path=str(tmp_path / "ray"))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client, parents, children = _runs(uri)
    assert len(parents) == 1 and len(children) == 4
    parent = parents[0]
    assert parent.info.status == "FINISHED" and parent.info.run_id == outcome.parent_run_id
    assert [a.path for a in client.list_artifacts(parent.info.run_id, "spec")] == ["spec/spec.yaml"]
    assert all(c.data.tags["mlflow.parentRunId"] == parent.info.run_id for c in children)
    assert len({c.data.tags["arnn.trial_id"] for c in children}) == 4
    assert not [c for c in children if c.info.status == "RUNNING"]

    states = {c.data.tags["arnn.status"] for c in children}
    diverged = [c for c in children if c.data.tags["arnn.status"] == "diverged"]
    assert len(diverged) == 2 and all(c.info.status == "FINISHED" for c in diverged)
    assert all(c.data.params["lr"] == "1e+20" for c in diverged)
    for child in children:
        if child.data.tags["arnn.status"] == "pruned":
            assert child.info.status == "KILLED"
        if child.data.tags["arnn.status"] == "finished":
            assert child.info.status == "FINISHED" and "test_accuracy" in child.data.metrics
    assert states <= {"finished", "pruned", "diverged"} and "finished" in states

    counts = outcome.counts
    assert counts["diverged"] == 2 and sum(counts.values()) == 4
    assert parent.data.metrics["trials_diverged"] == 2

    study = _study(tmp_path / "ray", "grid")
    told = [t.state for t in study.trials]
    assert told.count(optuna.trial.TrialState.FAIL) == 2  # the diverged
    assert told.count(optuna.trial.TrialState.PRUNED) == counts["pruned"]
    assert told.count(optuna.trial.TrialState.COMPLETE) == counts["finished"]


def _mnist_spec(tmp_path: Path, *, samples: int) -> Path:
    """A few seconds a trial on pixel MNIST: for what depends on the data reaching trials."""
    return _spec(
        tmp_path,
        task="mnist",
        task_options={},
        fixed={"hidden": 4, "epochs": 1, "subset": 64, "val_size": 32, "batch_size": 32},
        params={"lr": {"type": "categorical", "choices": [0.01]}},
        sampler={"type": "random", "seed": 0},
        scheduler={"type": "none"},
        num_samples=samples,
        metric="val_accuracy",
        mode="max",
    )


def test_a_relative_data_dir_in_the_environment_reaches_the_trials(tmp_path, monkeypatch):
    """Trials run in folders of their own: ARNN_DATA_DIR=data means the driver's ./data."""
    write_mnist(tmp_path / "data", train=300, test=50)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ARNN_DATA_DIR", "data")
    spec = _mnist_spec(tmp_path, samples=1)
    outcome = sweep(str(spec), name="relative", storage_path=str(tmp_path / "ray"))
    assert outcome.counts["finished"] == 1, outcome.counts


def test_when_every_trial_fails_the_sweep_says_why_and_exits_1(tmp_path, monkeypatch):
    """A cluster whose nodes read a broken MNIST (the driver, on another address, does not
    check the workers' data): every trial fails, and the sweep ends FAILED, exit 1."""
    from ray.cluster_utils import Cluster

    write_broken_mnist(tmp_path / "broken")
    monkeypatch.setenv("ARNN_DATA_DIR", str(tmp_path / "broken"))  # the nodes inherit it
    spec = _mnist_spec(tmp_path, samples=2)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    try:
        done = run_arnn(
            "sweep",
            str(spec),
            "--address",
            cluster.address,
            "--storage-path",
            str(tmp_path / "ray"),
            cwd=tmp_path,
            timeout=300,
        )
    finally:
        cluster.shutdown()
    assert done.returncode == 1, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("every trial failed; the first: "), last
    assert "MNIST in" in last and "cannot be read (AssertionError)" in last, last
    assert "2 trials: 0 finished, 0 pruned, 0 diverged, 2 failed" in done.stdout
    assert "best trial" not in done.stdout
    _, parents, children = _runs(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert [p.info.status for p in parents] == ["FAILED"]
    assert len(children) == 2 and {c.info.status for c in children} == {"FAILED"}


def test_a_second_sweep_of_the_same_name_needs_resume(tmp_path, monkeypatch, capsys):
    from arnn.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "ray" / "taken").mkdir(parents=True)
    (tmp_path / "ray" / "taken" / "tuner.pkl").write_bytes(b"")
    spec = str(_spec(tmp_path))
    assert main(["sweep", spec, "--name", "taken", "--storage-path", str(tmp_path / "ray")]) == 2
    assert "sweep 'taken' exists" in capsys.readouterr().err
    assert main(["sweep", spec, "--name", "nothing", "--resume"]) == 2
    assert "--resume: no sweep 'nothing'" in capsys.readouterr().err
    assert not (tmp_path / "mlflow.db").exists()


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def _epochs_logged(uri: str) -> int:
    try:
        client, _, children = _runs(uri)
    except Exception:
        return 0
    return sum(len(client.get_metric_history(c.info.run_id, "val_loss")) for c in children)


def _slow_spec(tmp_path: Path, *, samples: int, epochs: int, seed: int) -> Path:
    """Trials of a few seconds an epoch, all full length: time to kill something."""
    return _spec(
        tmp_path,
        task_options={**ADDING, "length": 60, "train_size": 4096},
        params={"lr": {"type": "float", "low": 0.001, "high": 0.01}},
        sampler={"type": "random", "seed": seed},
        scheduler={"type": "none"},
        num_samples=samples,
        fixed={"hidden": 16, "epochs": epochs, "val_size": 256, "batch_size": 32},
    )


def test_a_killed_driver_is_resumed_to_exactly_num_samples_runs(tmp_path):
    spec = _slow_spec(tmp_path, samples=3, epochs=3, seed=1)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = [
        sys.executable,
        "-m",
        "arnn",
        "sweep",
        str(spec),
        "--name",
        "killed",
        "--storage-path",
        str(tmp_path / "ray"),
        "--tracking-uri",
        uri,
    ]
    driver = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_for(lambda: _epochs_logged(uri) >= 2, 180, "two epochs logged")
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    _, _, before = _runs(uri)
    assert any(c.info.status == "RUNNING" for c in before)  # killed mid-sweep

    done = run_arnn(
        "sweep",
        str(spec),
        "--name",
        "killed",
        "--resume",
        "--storage-path",
        str(tmp_path / "ray"),
        "--tracking-uri",
        uri,
        cwd=tmp_path,
        timeout=400,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    client, parents, children = _runs(uri)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(children) == 3
    assert {c.info.status for c in children} == {"FINISHED"}
    for child in children:  # each resumed trial went on from its checkpoint
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "val_loss")]
        assert sorted(steps) == [1, 2, 3], steps


def _lose_node(cluster, node) -> None:
    """What losing a machine does: its raylet and every process it started die at once.
    (Cluster.remove_node alone leaves the node's workers running until they notice.)"""
    import psutil
    from ray._private import ray_constants

    (raylet,) = node.all_processes[ray_constants.PROCESS_TYPE_RAYLET]
    workers = psutil.Process(raylet.process.pid).children(recursive=True)
    cluster.remove_node(node, allow_graceful=False)
    for worker in workers:
        try:
            worker.kill()
        except psutil.NoSuchProcess:
            pass


def test_a_lost_worker_node_costs_no_run_and_no_finished_epoch(tmp_path, mlflow_server):
    """Head + 2 worker nodes on this machine; the node of a running trial is removed
    mid-trial. That trial restarts from its last checkpoint on the other node, logging over
    HTTP to MLflow."""
    from ray.cluster_utils import Cluster

    spec = _slow_spec(tmp_path, samples=2, epochs=4, seed=2)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    experiment = "nodes"
    try:
        driver = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "arnn",
                "sweep",
                str(spec),
                "--name",
                "nodes",
                "--address",
                cluster.address,
                "--storage-path",
                str(tmp_path / "ray"),
                "--tracking-uri",
                mlflow_server,
                "--experiment",
                experiment,
            ],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

        def running_trial_node():
            """The node of a running trial that has logged 1 or 2 of its 4 epochs."""
            try:
                client, _, children = _runs(mlflow_server, experiment)
            except Exception:
                return None
            for child in children:
                if child.info.status != "RUNNING" or "arnn.node_id" not in child.data.tags:
                    continue
                if 1 <= len(client.get_metric_history(child.info.run_id, "val_loss")) <= 2:
                    return child.data.tags["arnn.node_id"]
            return None

        node_id = _wait_for(running_trial_node, 240, "a running trial to finish an epoch")
        (doomed,) = [w for w in workers if w.node_id == node_id]
        _lose_node(cluster, doomed)
        output, _ = driver.communicate(timeout=400)
        assert driver.returncode == 0, output[-3000:]
    finally:
        cluster.shutdown()
    client, parents, children = _runs(mlflow_server, experiment)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(children) == 2 and {c.info.status for c in children} == {"FINISHED"}
    retried = [c for c in children if c.data.tags["arnn.attempts"] != "1"]
    attempts = [(c.data.tags["arnn.node_id"][:8], c.data.tags["arnn.attempts"]) for c in children]
    assert len(retried) == 1, f"removed {node_id[:8]}; (node, attempts): {attempts}\n{output}"
    assert retried[0].data.tags["arnn.node_id"] != node_id  # its last attempt ran elsewhere
    assert int(retried[0].data.tags["arnn.resumed_from_epoch"]) >= 1
    for child in children:
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "val_loss")]
        assert sorted(steps) == [1, 2, 3, 4], steps
