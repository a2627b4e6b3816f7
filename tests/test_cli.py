from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from arnn.cli import main
from tests.conftest import assert_provenance, only_run, run_arnn


def _train_args(mnist_root: Path, *extra: str) -> list[str]:
    return [
        "train",
        "--task",
        "mnist",
        "--model",
        "antisymmetric",
        "--hidden",
        "8",
        "--subset",
        "100",
        "--val-size",
        "40",
        "--epochs",
        "2",
        "--batch-size",
        "50",
        "--data-dir",
        str(mnist_root),
        "--no-download",
        "--device",
        "cpu",
        *extra,
    ]


def test_train_logs_one_complete_run_to_the_sqlite_default(mnist_root, tmp_path):
    done = run_arnn(*_train_args(mnist_root, "--lr", "0.05"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("test accuracy ")
    client, run = only_run(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert run.info.run_id in last and run.info.status == "FINISHED"
    params = run.data.params
    assert params["optim.lr"] == "0.05" and params["model.hidden"] == "8"
    assert params["model.name"] == "antisymmetric" and params["model.eps"] == "0.01"
    assert params["task.name"] == "mnist" and params["runtime.kernel"] == "auto"
    assert params["schedule.length_unit"] == "epochs" and params["seed"] == "0"
    assert run.info.run_name == "antisymmetric on mnist"  # what it is, not a random name
    assert "/runs?orderByKey=" in done.stdout  # the runs table's URL, every run a row
    assert "workflowType=machine_learning" in done.stdout
    tags = run.data.tags
    assert tags["arnn.task"] == "mnist" and tags["arnn.units"] == "8"
    assert tags["arnn.parameters"] == str(8 * 7 // 2 + 16 + 90)
    assert tags["arnn.status"] == "finished" and tags["arnn.device"] == "cpu"
    assert tags["arnn.kernel"] == "eager" and tags["arnn.kind"] == "train"
    assert_provenance(tags)
    history = client.get_metric_history(run.info.run_id, "val_accuracy")
    assert sorted(m.step for m in history) == [1, 2]
    for key in ("test_accuracy", "best_val_accuracy", "seconds_per_epoch", "train_loss"):
        assert key in run.data.metrics
    artifacts = [a.path for a in client.list_artifacts(run.info.run_id, "model")]
    assert artifacts == ["model/weights.pt"]


def test_train_logs_over_http_to_a_real_mlflow_server(mnist_root, tmp_path, mlflow_server):
    done = run_arnn(
        *_train_args(mnist_root, "--experiment", "remote", "--epochs", "1"),
        cwd=tmp_path,
        env={"MLFLOW_TRACKING_URI": mlflow_server},
    )
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "mlflow.db").exists()
    client, run = only_run(mlflow_server, "remote")
    assert run.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_accuracy")] == [1]
    assert client.list_artifacts(run.info.run_id, "model")[0].path == "model/weights.pt"


def test_a_diverged_run_is_finished_with_its_status_tag(tmp_path):
    done = run_arnn(
        "train",
        "--task",
        "adding",
        "--task-option",
        "length=8",
        "--task-option",
        "train_size=256",
        "--task-option",
        "test_size=32",
        "--val-size",
        "32",
        "--hidden",
        "8",
        "--lr",
        "1e20",
        "--epochs",
        "2",
        "--device",
        "cpu",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "diverged" in done.stdout
    _, run = only_run(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert run.info.status == "FINISHED" and run.data.tags["arnn.status"] == "diverged"


BAD_INPUTS = [
    (["--model", "transformer"], "--model: unknown model 'transformer'; allowed: ablation"),
    (["--task", "imagenet"], "--task: unknown task 'imagenet'; allowed: adding"),
    (
        ["--eps", "0"],
        "--model-option: model antisymmetric: option 'eps': Input should be greater than 0, "
        "got '0'",
    ),
    (["--eps", "-0.1"], "--model-option: model antisymmetric: option 'eps': Input should be"),
    (["--gamma", "-1"], "--model-option: model antisymmetric: option 'gamma': Input should be"),
    (["--hidden", "0"], "--hidden: input should be greater than or equal to 1"),
    (["--lr", "0"], "--lr: input should be greater than 0"),
    (["--batch-size", "0"], "--batch-size: input should be greater than or equal to 1"),
    (["--hidden", "many"], "--hidden: input should be a valid integer"),
    (
        ["--optimizer", "lbfgs"],
        "--optimizer: input should be 'sgd', 'adagrad', 'adam' or 'rmsprop'",
    ),
    (["--epochs", "2", "--iterations", "5"], "--iterations: give epochs or iterations"),
    (["--task-option", "noise=pink"], "--task-option: task mnist: unknown option 'noise'"),
    (["--task-option", "noise"], "--task-option: expected KEY=VALUE"),
    (["--device", "tpu"], "--device: must be auto, cpu, cuda or cuda:N"),
    (["--colour", "red"], "unrecognized arguments: --colour red"),
    (
        ["--kernel", "fused", "--hidden", "256"],
        "--kernel: fused supports hidden sizes up to 128 (A must fit in one GPU core's shared "
        "memory), got hidden 256; use auto or eager",
    ),
]


@pytest.mark.parametrize(("flags", "message"), BAD_INPUTS)
def test_bad_input_is_one_line_and_exit_2_with_no_run(
    flags, message, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--data-dir", str(tmp_path), *flags]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("arnn: error: ") and message in err, err
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlruns").exists()


def test_a_data_folder_without_the_data_exits_2_before_any_run(tmp_path):
    done = run_arnn("train", "--data-dir", str(tmp_path / "empty"), "--subset", "10", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert str(tmp_path / "empty" / "MNIST" / "raw") in lines[0]
    assert "t10k-images-idx3-ubyte" in lines[0]
    assert not (tmp_path / "mlflow.db").exists()


def test_models_prints_exact_parameter_counts_beside_the_paper(capsys):
    assert main(["models", "--task", "mnist", "--hidden", "128"]) == 0
    rows = {line.split()[0]: line.split()[1:4] for line in capsys.readouterr().out.splitlines()}
    assert rows["antisymmetric"] == ["128", "9674", "10k"]
    assert rows["antisymmetric_gated"] == ["128", "9930", "10k"]
    assert rows["lstm"] == ["128", "68362", "68k"]
    assert rows["gru"][:2] == ["128", "51594"]


def test_tasks_lists_shapes_and_options(capsys):
    assert main(["tasks"]) == 0
    out = capsys.readouterr().out
    assert "noisy_cifar10  1000  96" in out and "noise=independent" in out


def test_train_resumed_from_its_checkpoint_continues_the_same_mlflow_run(mnist_root, tmp_path):
    first = run_arnn(
        *_train_args(mnist_root, "--epochs", "1", "--checkpoint-dir", "ckpt"), cwd=tmp_path
    )
    assert first.returncode == 0, first.stderr
    second = run_arnn(
        *_train_args(mnist_root, "--epochs", "2", "--checkpoint-dir", "ckpt"), cwd=tmp_path
    )
    assert second.returncode == 0, second.stderr
    assert "epoch   1" not in second.stdout and "epoch   2" in second.stdout
    client, run = only_run(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert run.info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_accuracy")]
    assert sorted(steps) == [1, 2]


def test_a_run_logs_only_its_models_settings_and_every_task_option(tmp_path):
    """An LSTM reads no eps, gamma or kernel (its recurrent init reads sigma_w); the task's
    options are logged typed, with their defaults filled in."""
    done = run_arnn(
        "train",
        "--task",
        "adding",
        "--task-option",
        "length=6",
        "--task-option",
        "train_size=0128",
        "--val-size",
        "32",
        "--model",
        "lstm",
        "--hidden",
        "4",
        "--epochs",
        "1",
        "--device",
        "cpu",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    _, run = only_run(f"sqlite:///{tmp_path / 'mlflow.db'}")
    params = run.data.params
    assert not {"model.eps", "model.gamma", "runtime.kernel"} & set(params), params
    assert params["model.sigma_w"] == "1.0"
    assert params["task.length"] == "6" and params["task.train_size"] == "128"
    assert params["task.test_size"] == "2000"  # the default, filled in
    options = json.loads(run.data.tags["arnn.task_options"])
    assert options == {"length": 6, "train_size": 128, "test_size": 2000, "data_seed": 0}


def test_pmnist_records_its_permutation_seed(mnist_root, tmp_path):
    args = _train_args(mnist_root, "--epochs", "1")
    args[args.index("mnist")] = "pmnist"
    done = run_arnn(*args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    _, run = only_run(f"sqlite:///{tmp_path / 'mlflow.db'}")
    from arnn.tasks.catalog import PMNIST_SEED

    assert run.data.params["task.perm_seed"] == str(PMNIST_SEED)
    assert json.loads(run.data.tags["arnn.task_options"]) == {"perm_seed": PMNIST_SEED}


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupted_train_keeps_its_best_weights(tmp_path, signum, code):
    """No --checkpoint-dir: stopped after its first epoch, the run is KILLED/interrupted
    and still holds the best weights so far."""
    command = [
        sys.executable,
        "-m",
        "arnn",
        "train",
        "--task",
        "adding",
        "--task-option",
        "length=40",
        "--task-option",
        "train_size=2048",
        "--val-size",
        "64",
        "--hidden",
        "16",
        "--epochs",
        "500",
        "--device",
        "cpu",
    ]
    trainer = subprocess.Popen(
        command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 120
        for line in trainer.stdout:
            if line.startswith("epoch") or time.monotonic() > deadline:
                break
        trainer.send_signal(signum)
        trainer.wait(timeout=60)
    finally:
        trainer.kill()
    assert trainer.returncode == code, trainer.stderr.read()[-2000:]
    client, run = only_run(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert run.info.status == "KILLED" and run.data.tags["arnn.status"] == "interrupted"
    assert [a.path for a in client.list_artifacts(run.info.run_id, "model")] == ["model/weights.pt"]


def test_arnn_help_says_what_the_tool_is_for_without_importing_torch():

    code = (
        "import sys\n"
        "from arnn.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('imported:', sorted(m for m in ('torch', 'mlflow', 'ray') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "arnn trains and searches AntisymmetricRNN" in done.stdout
    assert "report" in done.stdout and "examples:" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "imported: []"
