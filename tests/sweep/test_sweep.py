"""Sweeps on a real local Ray cluster, logging to real MLflow stores."""

from __future__ import annotations

import datetime
import glob
import json
import os
import pickle
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import psutil
import yaml
from mlflow.tracking import MlflowClient

from arnn.cli import main
from arnn.sweep.driver import sweep
from arnn.sweep.report.reading import read_spec as _read_spec
from tests.conftest import assert_provenance, run_arnn
from tests.datasets import write_broken_mnist, write_mnist
from tests.ray_local import is_loopback, listeners_of, local_cluster, ray_processes

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
    """The Optuna study as Ray last saved it with the sweep's searcher state: the newest
    session's file, by the session's time in its name (the files are copied to storage
    together, so their modification times do not tell)."""
    path = max(glob.glob(str(storage / name / "searcher-state-*.pkl")))
    with open(path, "rb") as f:
        state = pickle.load(f)
    return state["_ot_study"] if isinstance(state, dict) else state[0]


def _kept_study(folder: Path, name: str) -> optuna.Study:
    """The study the sweep kept, beside its MLflow store, as a user loads it."""
    return optuna.load_study(study_name=name, storage=f"sqlite:///{folder / 'optuna.db'}")


_STATE_OF = {"finished": "COMPLETE", "pruned": "PRUNED", "diverged": "FAIL", "failed": "FAIL"}


def _assert_kept_study_matches(study: optuna.Study, children) -> None:
    """One study trial per trial run, none twice, each with the run's outcome and values."""
    runs = {c.info.run_id: c for c in children}
    by_run = [t.user_attrs["mlflow_run_id"] for t in study.trials]
    assert sorted(by_run) == sorted(runs), (by_run, list(runs))
    for trial in study.trials:
        run = runs[trial.user_attrs["mlflow_run_id"]]
        assert trial.state.name == _STATE_OF[run.data.tags["arnn.status"]]
        assert trial.params == json.loads(run.data.tags["arnn.sampled"])
        if trial.state.name == "COMPLETE":
            assert trial.value == run.data.metrics["trial_score"]
        # when the trial ran, not when the study was written
        started = datetime.datetime.fromtimestamp(run.info.start_time / 1000)
        assert abs((trial.datetime_start - started).total_seconds()) < 0.01
        assert trial.datetime_complete >= trial.datetime_start


def _progress(out: str) -> list[str]:
    """The progress lines a sweep printed, without their clocks."""
    lines = [line for line in out.splitlines() if re.match(r"\[ *\d+ s\] ", line)]
    return [line.split("] ", 1)[1] for line in lines]


def test_a_sweep_records_every_trial_nested_under_its_run(tmp_path, monkeypatch, capfd, caplog):
    monkeypatch.chdir(tmp_path)
    spec = _spec(tmp_path, map=["lr", "gated"])
    outcome = sweep(str(spec), name="grid", storage_path=str(tmp_path / "ray"))
    out, err = capfd.readouterr()
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client, parents, children = _runs(uri)
    assert len(parents) == 1 and len(children) == 4
    parent = parents[0]
    assert _read_spec(client, parent).map_params() == ("lr", "gated")  # what the report maps
    assert parent.info.status == "FINISHED" and parent.info.run_id == outcome.parent_run_id
    assert [a.path for a in client.list_artifacts(parent.info.run_id, "spec")] == ["spec/spec.yaml"]
    assert all(c.data.tags["mlflow.parentRunId"] == parent.info.run_id for c in children)
    assert len({c.data.tags["arnn.trial_id"] for c in children}) == 4
    assert not [c for c in children if c.info.status == "RUNNING"]

    states = {c.data.tags["arnn.status"] for c in children}
    diverged = [c for c in children if c.data.tags["arnn.status"] == "diverged"]
    assert len(diverged) == 2 and all(c.info.status == "FINISHED" for c in diverged)
    assert all(c.data.params["optim.lr"] == "1e+20" for c in diverged)
    for child in children:
        if child.data.tags["arnn.status"] == "pruned":
            assert child.info.status == "KILLED"
        if child.data.tags["arnn.status"] == "finished":
            assert child.info.status == "FINISHED"
        assert "test_accuracy" not in child.data.metrics  # search trials leave the test set
    assert states <= {"finished", "pruned", "diverged"} and "finished" in states

    counts = outcome.counts
    assert counts["diverged"] == 2 and sum(counts.values()) == 4
    assert parent.data.metrics["trials_diverged"] == 2
    assert parent.data.tags["arnn.status"] == "finished"
    for run in (parent, *children):  # provenance on the sweep's run and every trial's
        assert_provenance(run.data.tags)
        assert json.loads(run.data.tags["arnn.task_options"]) == {**ADDING, "data_seed": 0}

    # One rule for "best": each trial's score is its best epoch (logged as trial_score),
    # the best trial the best finished one; Optuna, the console and the sweep's run agree.
    finished = [c for c in children if c.data.tags["arnn.status"] == "finished"]
    for child in finished:
        losses = [m.value for m in client.get_metric_history(child.info.run_id, "val_loss")]
        assert child.data.metrics["trial_score"] == min(losses)
    best = min(finished, key=lambda c: c.data.metrics["trial_score"])
    assert outcome.best.run_id == best.info.run_id
    assert parent.data.tags["arnn.best_run_id"] == best.info.run_id
    assert parent.data.metrics["sweep_best_val_loss"] == best.data.metrics["trial_score"]
    assert "best_val_loss" not in parent.data.metrics

    # One name for a trial wherever a person reads it: its run's (t03), on the console and
    # in the tag arnn.best_trial; Ray's id only where tools look (arnn.best_trial_id).
    best_name = best.info.run_name.split()[0]
    assert parent.data.tags["arnn.best_trial"] == best_name
    assert parent.data.tags["arnn.best_trial_id"] == best.data.tags["arnn.trial_id"]
    assert f"best trial {best_name} (best of the finished): val_loss " in out
    table = re.findall(r"^(t\d\d) +(finished|pruned|diverged) ", out, re.MULTILINE)
    named = [(c.info.run_name.split()[0], c.data.tags["arnn.status"]) for c in children]
    assert sorted(table) == sorted(named), out
    assert not [c for c in children if c.data.tags["arnn.trial_id"] in out + err]
    # The trials that started are running (Tune marks one RUNNING only after the callbacks;
    # a second start within a second of the first makes one line of the two).
    progress = _progress(out)
    assert re.match(r"[12] running, 0/4 done", progress[0]), progress
    assert progress[-1].startswith("0 running, 4/4 done"), progress
    # Nothing a user cannot place: the diverged trials' NaNs raise no bare line from
    # tensorboardX (Tune's TensorBoard logger, off; a logged warning, which pytest takes
    # from the console into caplog).
    assert "NaN or Inf" not in out + err + caplog.text
    assert not list((tmp_path / "ray" / "grid").glob("*/events.out.tfevents*"))

    study = _study(tmp_path / "ray", "grid")
    told = [t.state for t in study.trials]
    assert told.count(optuna.trial.TrialState.FAIL) == 2  # the diverged
    assert told.count(optuna.trial.TrialState.PRUNED) == counts["pruned"]
    assert told.count(optuna.trial.TrialState.COMPLETE) == counts["finished"]
    scores = {c.data.tags["arnn.sampled"]: c.data.metrics.get("trial_score") for c in children}
    for trial in study.trials:
        key = json.dumps(trial.params, sort_keys=True)
        assert trial.user_attrs["arnn_outcome"] in ("finished", "pruned", "diverged")
        if trial.state == optuna.trial.TrialState.COMPLETE:
            assert trial.value == scores[key]  # the best epoch, not the last
    _assert_kept_study_matches(_kept_study(tmp_path, "grid"), children)
    # trials are named by their number and what they tried: t03 gated lr=1e+20
    assert sorted(int(c.data.tags["arnn.trial_number"]) for c in children) == [0, 1, 2, 3]
    for child in children:
        number, sampled = child.data.tags["arnn.trial_number"], child.data.tags["arnn.sampled"]
        gated = " gated" if json.loads(sampled)["gated"] else ""
        lr = "0.01" if json.loads(sampled)["lr"] == 0.01 else "1e+20"
        assert child.info.run_name == f"t{int(number) + 1:02d}{gated} lr={lr}"
    assert parent.info.run_name == "grid · t"

    # its report, on its run; `arnn report` writes it again from MLflow alone
    report = {"curves.png", "map.png", "importance.png", "importance.json", "trials.csv"}
    assert report <= {a.path for a in client.list_artifacts(parent.info.run_id)}
    again = tmp_path / "again"
    assert main(["report", "grid", "--tracking-uri", uri, "--out", str(again)]) == 0
    assert {p.name for p in again.iterdir()} == report
    assert len((again / "trials.csv").read_text().strip().splitlines()) == 1 + 4


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


def test_a_relative_data_dir_in_the_environment_reaches_the_trials(tmp_path, monkeypatch, capsys):
    """Trials run in folders of their own: ARNN_DATA_DIR=data means the driver's ./data.
    (One trial, which the console counts as one: `1 trial`, never `1 trials`.)"""
    write_mnist(tmp_path / "data", train=300, test=50)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ARNN_DATA_DIR", "data")
    spec = _mnist_spec(tmp_path, samples=1)
    outcome = sweep(str(spec), name="relative", storage_path=str(tmp_path / "ray"))
    assert outcome.counts["finished"] == 1, outcome.counts
    out = capsys.readouterr().out
    assert "sweep relative: 1 trial of mnist / antisymmetric, at most 2 at once" in out
    assert "\n1 trial: 1 finished, 0 pruned," in out and "(1 trial) in sqlite:///" in out
    assert "1 trials" not in out


def test_when_every_trial_fails_the_sweep_says_why_and_exits_1(
    tmp_path, monkeypatch, mlflow_server
):
    """A cluster whose nodes read a broken MNIST (the driver, on another address, does not
    check the workers' data): every trial fails, and the sweep ends FAILED, exit 1."""
    write_broken_mnist(tmp_path / "broken")
    monkeypatch.setenv("ARNN_DATA_DIR", str(tmp_path / "broken"))  # the nodes inherit it
    spec = _mnist_spec(tmp_path, samples=2)
    cluster = local_cluster(num_cpus=2)
    try:
        done = run_arnn(
            "sweep",
            str(spec),
            "--address",
            cluster.address,
            "--storage-path",
            str(tmp_path / "ray"),
            "--tracking-uri",
            mlflow_server,
            "--experiment",
            "failing",
            cwd=tmp_path,
            timeout=300,
        )
    finally:
        cluster.shutdown()
    assert done.returncode == 1, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("every trial failed; the first: "), last
    assert "MNIST in" in last and "cannot be read (AssertionError)" in last, last
    assert (
        "2 trials: 0 finished, 0 pruned, 0 interrupted, 0 diverged, 2 failed, 0 never started"
        in done.stdout
    )
    assert "best trial" not in done.stdout
    _, parents, children = _runs(mlflow_server, "failing")
    assert [(p.info.status, p.data.tags["arnn.status"]) for p in parents] == [("FAILED", "failed")]
    assert len(children) == 2 and {c.info.status for c in children} == {"FAILED"}
    assert all("cannot be read" in c.data.tags["arnn.error"] for c in children)


def test_a_cluster_with_a_tracking_file_on_this_machine_is_refused(tmp_path):
    """Workers of a cluster would each write a SQLite file of their own: refused at once,
    before Ray or MLflow is touched."""
    spec = _spec(tmp_path)
    for address in ("127.0.0.1:1", "ray://127.0.0.1:1", "auto"):  # never dialled
        done = run_arnn("sweep", str(spec), "--address", address, cwd=tmp_path, timeout=60)
        assert done.returncode == 2
        line = done.stderr.strip()
        assert line.startswith("arnn: error: --tracking-uri: sqlite:///") and "\n" not in line
        assert "point --tracking-uri at the MLflow server on the head" in line
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "ray_results").exists()


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


def _sweep_command(spec: Path, tmp_path: Path, name: str, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "arnn",
        "sweep",
        str(spec),
        "--name",
        name,
        "--storage-path",
        str(tmp_path / "ray"),
        "--tracking-uri",
        f"sqlite:///{tmp_path / 'mlflow.db'}",
        *extra,
    ]


def test_a_killed_driver_is_resumed_to_exactly_num_samples_runs(tmp_path):
    spec = _slow_spec(tmp_path, samples=3, epochs=3, seed=1)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = _sweep_command(spec, tmp_path, "killed")
    driver = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_for(lambda: _epochs_logged(uri) >= 2, 180, "two epochs logged")
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    _, _, before = _runs(uri)
    assert any(c.info.status == "RUNNING" for c in before)  # killed mid-sweep

    done = run_arnn(*args[3:], "--resume", cwd=tmp_path, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    client, parents, children = _runs(uri)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(children) == 3
    assert {c.info.status for c in children} == {"FINISHED"}
    for child in children:  # each resumed trial went on from its checkpoint
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "val_loss")]
        assert sorted(steps) == [1, 2, 3], steps


def test_a_trial_run_the_resumed_sweep_never_knew_is_deleted_not_counted(tmp_path):
    """What a killed driver can leave: a trial run whose trial Tune had not yet saved in its
    state (the resumed sweep runs that slot again as a new trial). Made here by hand, a run
    like a trial's under a finished sweep, RUNNING; --resume then deletes it (tagged lost)
    and counts it nowhere: not in the runs, the kept study or the report."""
    spec = _spec(
        tmp_path,
        params={"gated": {"type": "bool"}},
        scheduler={"type": "none"},
        fixed={"hidden": 8, "epochs": 1, "val_size": 64, "batch_size": 64},
    )
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    done = run_arnn(*_sweep_command(spec, tmp_path, "lost")[3:], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    client, (parent,), children = _runs(uri)
    assert len(children) == 2
    lost = client.create_run(
        parent.info.experiment_id,
        run_name="t03 gated",
        tags={
            "mlflow.parentRunId": parent.info.run_id,
            "arnn.kind": "trial",
            "arnn.trial_id": "d0e5a1b2",
            "arnn.trial_number": children[0].data.tags["arnn.trial_number"],  # run again
            "arnn.sampled": json.dumps({"gated": True}),
        },
    )
    client.log_metric(lost.info.run_id, "val_loss", 0.5, step=1)

    done = run_arnn(*_sweep_command(spec, tmp_path, "lost", "--resume")[3:], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    again = f"t{int(children[0].data.tags['arnn.trial_number']) + 1:02d}"  # the slot run again
    assert f"trial {again} (Ray id d0e5a1b2) was lost" in done.stdout, done.stdout
    assert lost.info.run_id in done.stdout
    client, (parent,), children = _runs(uri)
    assert len(children) == 2 and lost.info.run_id not in {c.info.run_id for c in children}
    gone = client.get_run(lost.info.run_id)
    assert gone.info.lifecycle_stage == "deleted" and gone.info.status == "KILLED"
    assert gone.data.tags["arnn.status"] == "lost"
    assert parent.data.metrics["trials_finished"] == 2
    assert "trials_pruned" not in parent.data.metrics or parent.data.metrics["trials_pruned"] == 0
    _assert_kept_study_matches(_kept_study(tmp_path, "lost"), children)
    with tempfile.TemporaryDirectory() as folder:
        path = client.download_artifacts(parent.info.run_id, "trials.csv", folder)
        rows = Path(path).read_text().strip().splitlines()[1:]
    assert len(rows) == 2 and lost.info.run_id not in "".join(rows), rows


def test_resuming_a_sweep_reopens_its_own_run_not_a_namesakes_kept_elsewhere(tmp_path):
    """Two sweeps of one name, their Ray states in two folders, one MLflow store: --resume
    of the first goes on in the first's run, and leaves the second's trials alone."""
    spec = _spec(
        tmp_path,
        params={"gated": {"type": "bool"}},
        scheduler={"type": "none"},
        fixed={"hidden": 8, "epochs": 1, "val_size": 64, "batch_size": 64},
    )
    first = _sweep_command(spec, tmp_path, "twin")
    second = [*first, "--storage-path", str(tmp_path / "elsewhere")]  # the last one counts
    parents = []
    for args in (first, second, [*first, "--resume"]):
        done = run_arnn(*args[3:], cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]
        assert "warning" not in done.stderr, done.stderr[-3000:]
        parents.append(re.search(r"MLflow run (\w+) in ", done.stdout).group(1))
    assert parents[2] == parents[0] != parents[1]
    client, runs, children = _runs(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert len(runs) == 2 and len(children) == 4
    for parent in parents[:2]:
        mine = [c for c in children if c.data.tags["mlflow.parentRunId"] == parent]
        assert len(mine) == 2 and {c.info.status for c in mine} == {"FINISHED"}


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
    spec = _slow_spec(tmp_path, samples=2, epochs=4, seed=2)
    cluster = local_cluster(num_cpus=0)
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
            """The node of a running trial that has logged 1 or 2 of its 4 epochs, and
            whose checkpoint Ray has stored (a trial logs an epoch just before it hands
            Ray the checkpoint: losing the node in between restarts it from nothing)."""
            try:
                client, _, children = _runs(mlflow_server, experiment)
            except Exception:
                return None
            for child in children:
                if child.info.status != "RUNNING" or "arnn.node_id" not in child.data.tags:
                    continue
                trial = child.data.tags["arnn.trial_id"]
                stored = glob.glob(str(tmp_path / "ray" / "nodes" / trial / "checkpoint_*"))
                if (
                    stored
                    and 1 <= len(client.get_metric_history(child.info.run_id, "val_loss")) <= 2
                ):
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


def _finished_trials(uri: str) -> int:
    try:
        _, _, children = _runs(uri)
    except Exception:
        return 0
    return sum(c.info.status == "FINISHED" for c in children)


def test_ctrl_c_ends_a_sweep_killed_and_interrupted_and_resume_completes_it(tmp_path):
    """SIGINT after the first trial finished: exit 130, the sweep's run and the trials in
    flight KILLED with arnn.status=interrupted (not pruned, and not told to Optuna), the
    resume command printed; --resume then ends with exactly num_samples runs and trials."""
    spec = _slow_spec(tmp_path, samples=3, epochs=3, seed=3)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    driver = subprocess.Popen(
        _sweep_command(spec, tmp_path, "stopped"),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for(lambda: _finished_trials(uri) >= 1, 240, "a finished trial")
        # A running embedded sweep listens on loopback only.
        session = os.path.realpath("/tmp/ray/session_latest")
        listeners = listeners_of(ray_processes(psutil.Process(driver.pid), session))
        assert {name for name, *_ in listeners} >= {"gcs_server", "raylet"}, listeners
        assert all(is_loopback(ip) for _, _, ip, _ in listeners), listeners
        driver.send_signal(signal.SIGINT)
        output, errors = driver.communicate(timeout=120)
    finally:
        driver.kill()
    assert driver.returncode == 130, errors[-3000:]
    resume = errors.strip().splitlines()[-1]
    assert resume.startswith("resume it with: arnn sweep ") and "--name stopped --resume" in resume
    assert re.search(r"interrupted by SIGINT: (1 trial|\d+ trials) in flight closed", errors)
    _, parents, children = _runs(uri)
    assert [(p.info.status, p.data.tags["arnn.status"]) for p in parents] == [
        ("KILLED", "interrupted")
    ]
    assert parents[0].data.metrics["trials_interrupted"] >= 1
    assert not [c for c in children if c.info.status == "RUNNING"]
    labels = sorted(c.data.tags["arnn.status"] for c in children)
    assert "interrupted" in labels and "pruned" not in labels, labels
    assert "finished" in labels
    study = _study(tmp_path / "ray", "stopped")
    assert not [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    kept = _kept_study(tmp_path, "stopped")  # the finished trials so far, none in flight
    assert len(kept.trials) == labels.count("finished")
    client = MlflowClient(uri)
    report = {"curves.png", "map.png", "importance.png", "importance.json", "trials.csv"}
    assert report <= {a.path for a in client.list_artifacts(parents[0].info.run_id)}

    began = time.monotonic()
    done = run_arnn(*_sweep_command(spec, tmp_path, "stopped", "--resume")[3:], cwd=tmp_path)
    took = time.monotonic() - began
    assert done.returncode == 0, done.stderr[-3000:]
    # The resumed run's clock starts with it; its first line counts what finished before.
    first = next(line for line in done.stdout.splitlines() if re.match(r"\[ *\d+ s\] ", line))
    assert int(first[1:].split(" s]")[0]) <= took, (first, took)
    assert int(re.search(r"running, (\d+)/3 done", first).group(1)) >= labels.count("finished")
    client, parents, children = _runs(uri)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert parents[0].data.tags["arnn.status"] == "finished"
    assert len(children) == 3 and {c.info.status for c in children} == {"FINISHED"}
    assert {c.data.tags["arnn.status"] for c in children} == {"finished"}
    for child in children:
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "val_loss")]
        assert sorted(steps) == [1, 2, 3], steps
    study = _study(tmp_path / "ray", "stopped")
    told = [(t.number, t.state.name, t.params, t.user_attrs) for t in study.trials]
    ran = [(c.data.tags["arnn.sampled"], c.data.tags["arnn.attempts"]) for c in children]
    assert len(study.trials) == 3, (told, ran)
    assert {t.state for t in study.trials} == {optuna.trial.TrialState.COMPLETE}, (told, ran)
    _assert_kept_study_matches(_kept_study(tmp_path, "stopped"), children)
    with tempfile.TemporaryDirectory() as folder:  # the report, written again after the resume
        path = client.download_artifacts(parents[0].info.run_id, "trials.csv", folder)
        rows = Path(path).read_text().strip().splitlines()[1:]
    assert len(rows) == 3 and all(",finished," in row for row in rows), rows


def test_resuming_with_a_changed_spec_is_refused_naming_the_keys(tmp_path):
    spec = _spec(tmp_path, num_samples=2, sampler={"type": "random", "seed": 0})
    spec_text = spec.read_text()
    first = run_arnn(*_sweep_command(spec, tmp_path, "changed")[3:], cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    _, before, children_before = _runs(f"sqlite:///{tmp_path / 'mlflow.db'}")
    spec.write_text(spec_text.replace("eps: 0.5", "eps: 0.25"))
    done = run_arnn(*_sweep_command(spec, tmp_path, "changed", "--resume")[3:], cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "arnn: error: --resume: the spec changed since sweep 'changed' started: "
        "fixed.eps 0.5 -> 0.25; resume it with the spec it started with, or start a new sweep"
    )
    _, after, children_after = _runs(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert [p.info.status for p in after] == [p.info.status for p in before]
    assert len(children_after) == len(children_before)
