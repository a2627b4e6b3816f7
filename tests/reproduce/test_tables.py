"""reproduce/run.py and reproduce/table.py end to end: one cell of Table 1 on generated
MNIST through real sweeps on a local Ray, then the table read back from MLflow."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from tests.datasets import write_mnist

REPRODUCE = Path(__file__).resolve().parents[2] / "reproduce"


def _script(name: str, *args: str, cwd: Path, timeout: float = 600):
    return subprocess.run(
        [sys.executable, str(REPRODUCE / name), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_the_packages_paper_figures_agree_with_the_published_tables():
    """`arnn models` carries the paper's parameter figures itself (an installed package cannot
    read reproduce/); they must say what published.yaml says, row for row."""
    from arnn.paper import PAPER_PARAMETERS
    from arnn.published import load_published

    published = {
        (row.model, task, row.units): row.params
        for table in load_published(REPRODUCE / "published.yaml")
        if table.id in (1, 2)
        for row, task in table.cells()
    }
    assert PAPER_PARAMETERS == {key: figure for key, figure in published.items() if figure}


def _rows(markdown: str) -> list[list[str]]:
    """The cells of every markdown table row, stripped of their padding."""
    return [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in markdown.splitlines()
        if line.startswith("|") and not line.startswith("|:")
    ]


def _has_row(markdown: str, *first_cells: str) -> bool:
    return any(row[: len(first_cells)] == list(first_cells) for row in _rows(markdown))


def test_an_empty_store_still_prints_the_published_tables(tmp_path):
    done = _script("table.py", "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert _has_row(out, "AntisymmetricRNN", "98.0", "no runs yet")
    assert _has_row(out, "KRU (Jose et al., 2017)", "96.4", "cited")
    assert _has_row(out, "AntisymmetricRNN w/ gating", "62.2", "no runs yet")  # Table 2
    assert "Successors on the same benchmarks" in out
    unicornn = next(row for row in _rows(out) if row[0] == "UnICORNN (ICML 2021, 3 layers)")
    assert unicornn[4] == "98.4" and unicornn[7] == "62.4"
    assert "fill them with: python reproduce/run.py --table 1 --budget smoke" in out
    assert not list(tmp_path.glob("*.png")), "no figure is written unasked"


def _column(markdown: str, title: str, heading: str, method: str) -> str:
    """One cell of the markdown table under `title`: row `method`, column `heading`."""
    part = markdown[markdown.index(title) :]
    rows = _rows(part.split("\n\n", 2)[1])
    return rows[1 + [r[0] for r in rows[1:]].index(method)][rows[0].index(heading)]


def test_the_tables_name_each_task_once_and_count_parameters_before_any_run(tmp_path):
    """'params (ours)' is the count `arnn models` gives for the cell's spec, runs or none;
    Table 3 has its number; permuted MNIST has one name in every table."""
    done = _script("table.py", "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    models = subprocess.run(
        [sys.executable, "-m", "arnn", "models", "--task", "mnist", "--hidden", "128"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    counts = {line.split()[0]: line.split()[2] for line in models.splitlines()[2:]}
    table1 = "Table 1: pixel-by-pixel MNIST"
    assert _column(out, table1, "params (ours)", "AntisymmetricRNN") == counts["antisymmetric"]
    assert _column(out, table1, "params (ours)", "LSTM (Arjovsky et al., 2016)") == counts["lstm"]
    assert "Table 3: Successors" in out
    assert "psMNIST" not in out and "sMNIST" not in out
    assert out.count("pMNIST published") == 2  # Tables 1 and 3


def test_figures_go_beside_the_out_file(tmp_path):
    out = tmp_path / "tables" / "all.md"
    out.parent.mkdir()
    done = _script(
        "table.py",
        "--tracking-uri",
        f"sqlite:///{tmp_path / 'm.db'}",
        "--out",
        str(out),
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.parent.iterdir()) == [
        "all.md",
        "table1.png",
        "table2.png",
        "table3.png",
    ]
    assert not list(tmp_path.glob("*.png"))


def _store(uri: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("arnn")
    return [] if experiment is None else client.search_runs([experiment.experiment_id])


def _running_trial(database: Path) -> bool:
    """Read-only, straight from SQLite: an MLflow client here would race run.py's own
    creation of the store's tables."""
    if not database.exists():
        return False
    query = (
        "SELECT count(*) FROM runs JOIN tags ON tags.run_uuid = runs.run_uuid "
        "WHERE runs.status = 'RUNNING' AND tags.key = 'arnn.kind' AND tags.value = 'trial'"
    )
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=1) as store:
            return store.execute(query).fetchone()[0] > 0
    except sqlite3.Error:  # tables not made yet
        return False


def interrupt_mid_search(command: list[str], folder: Path, signum: int) -> tuple[int, str, str]:
    """Start run.py, send `signum` once a search trial runs (or after 240 s), and return
    its exit code, output and errors."""
    runner = subprocess.Popen(
        command, cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 240
        while runner.poll() is None and time.monotonic() < deadline:
            if _running_trial(folder / "mlflow.db"):
                break
            time.sleep(0.3)
        runner.send_signal(signum)
        output, errors = runner.communicate(timeout=120)
    finally:
        runner.kill()
    return runner.returncode, output, errors


def test_run_resumes_an_interrupted_cell_adds_seeds_and_table_shows_it(tmp_path):
    """SIGTERM during the search stops run.py (exit 143) at that cell, with no final runs;
    run again, it resumes that search (not a second one) and adds the final seeds, which
    are never search seeds; run again, it skips; --seeds 3 adds the one missing seed."""
    data = write_mnist(tmp_path / "data", train=1200, test=300)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = [
        "--table",
        "1",
        "--budget",
        "smoke",
        "--model",
        "antisymmetric",
        "--task",
        "mnist",
        "--seeds",
        "2",
        "--data-dir",
        str(data),
        "--tracking-uri",
        uri,
        "--storage-path",
        str(tmp_path / "ray"),
    ]
    returncode, output, errors = interrupt_mid_search(
        [sys.executable, str(REPRODUCE / "run.py"), *args], tmp_path, signal.SIGTERM
    )
    assert returncode == 143, errors[-3000:]
    assert "table1_mnist_antisymmetric: interrupted by SIGTERM" in output, output
    runs = _store(uri)
    (search,) = [r for r in runs if r.data.tags.get("arnn.kind") == "sweep"]
    assert (search.info.status, search.data.tags["arnn.status"]) == ("KILLED", "interrupted")
    assert not [r for r in runs if r.data.tags.get("arnn.stage") == "final"]

    done = _script("run.py", *args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "table1_mnist_antisymmetric: done with" in done.stdout
    assert "(final seeds 1000..1001)" in done.stdout
    runs = _store(uri)
    sweeps = [r for r in runs if r.data.tags.get("arnn.kind") == "sweep"]
    searches = [r for r in sweeps if r.data.tags["arnn.stage"] == "search"]
    assert len(searches) == 1 and searches[0].info.status == "FINISHED"  # resumed, not redone
    search_trials = [
        r
        for r in runs
        if r.data.tags.get("arnn.kind") == "trial" and r.data.tags["arnn.stage"] == "search"
    ]
    assert len(search_trials) == 2
    finals = [
        r
        for r in runs
        if r.data.tags.get("arnn.stage") == "final" and r.data.tags.get("arnn.kind") == "final"
    ]
    search_seeds = {r.data.params["seed"] for r in search_trials}
    assert sorted(r.data.params["seed"] for r in finals) == ["1000", "1001"]
    assert not search_seeds & {r.data.params["seed"] for r in finals}
    assert all("test_accuracy" in r.data.metrics for r in finals)
    assert sorted(r.info.run_name for r in finals) == ["seed 1000", "seed 1001"]

    again = _script("run.py", *args, cwd=tmp_path)
    assert again.returncode == 0 and "table1_mnist_antisymmetric: complete already" in again.stdout

    more = _script("run.py", *[a if a != "2" else "3" for a in args], cwd=tmp_path)
    assert more.returncode == 0, more.stderr[-3000:]
    assert "(final seeds 1002..1002)" in more.stdout
    finals = [
        r
        for r in _store(uri)
        if r.data.tags.get("arnn.stage") == "final" and r.data.tags.get("arnn.kind") == "final"
    ]
    assert sorted(r.data.params["seed"] for r in finals) == ["1000", "1001", "1002"]

    table = _script(
        "table.py",
        "--table",
        "1",
        "--tracking-uri",
        uri,
        "--out",
        str(tmp_path / "t1.md"),
        cwd=tmp_path,
    )
    assert table.returncode == 0, table.stderr
    text = (tmp_path / "t1.md").read_text()
    cells = next(row for row in _rows(text) if row[0] == "AntisymmetricRNN")
    assert cells[1] == "98.0" and "(n=3/3, 0 diverged, smoke)" in cells[2]
    assert cells[3].startswith("-")
    assert cells[-1] == "9674" and cells[-3] == "128"
    assert "trials searched per cell: antisymmetric/mnist 2" in text
    assert (tmp_path / "table1.png").read_bytes()[:4] == b"\x89PNG"

    def table_as(form: str) -> str:
        args = ("--table", "1", "--tracking-uri", uri, "--format", form, "--no-figure")
        return _script("table.py", *args, cwd=tmp_path).stdout

    latex = table_as("latex")
    assert r"\begin{tabular}" in latex and r"$\pm$" in latex
    csv = table_as("csv")
    assert csv.splitlines()[2].startswith("method,MNIST published")


def test_the_successors_table_is_trained_under_one_protocol_and_says_which(tmp_path):
    """Table 3's cells come from search_spaces/successors/: one cell (Lipschitz RNN on
    psMNIST) at the smoke budget, then the table with that cell filled, the others waiting,
    and the protocol the runs recorded under it."""
    data = write_mnist(tmp_path / "data", train=1200, test=300)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    done = _script(
        "run.py",
        *("--table", "3", "--budget", "smoke", "--model", "lipschitz", "--task", "pmnist"),
        *("--seeds", "1", "--data-dir", str(data), "--tracking-uri", uri),
        *("--storage-path", str(tmp_path / "ray")),
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "table3_pmnist_lipschitz: done with" in done.stdout
    (search_first,) = [  # the searcher's first: Optuna's trial number 0
        r
        for r in _store(uri)
        if r.data.tags.get("arnn.stage") == "search" and r.data.tags.get("arnn.trial_number") == "0"
    ]
    # the published settings are the first trial evaluated
    assert search_first.data.params["optim.lr"] == "0.0035"
    assert search_first.data.params["model.beta"] == "0.75"

    table = _script("table.py", "--table", "3", "--tracking-uri", uri, "--no-figure", cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    text = table.stdout
    cells = next(row for row in _rows(text) if row[0].startswith("Lipschitz RNN"))
    assert cells[1] == "99.4" and cells[2] == "no runs yet"
    assert cells[4] == "96.3" and "(n=1/1, 0 diverged, smoke)" in cells[5]
    assert _has_row(text, "coRNN (Rusch & Mishra, ICLR 2021)", "99.3", "no runs yet")
    assert "pMNIST permutation seed: 12008" in text
    assert "validation examples held out of the training set: 512" in text
    assert "training subset: 512" in text
    assert "trials searched per cell: lipschitz/pmnist 2" in text


def test_a_diverged_final_seed_is_counted_beside_the_mean_not_in_it():
    """Four final seeds asked: two finished (90% and 80%), one diverged after scoring 10%
    on the test set, one never started; an old final run on a search seed is left out. The
    cell is 85.0 ± 7.1 over n = 2/4 with 1 diverged."""
    import pandas as pd

    from arnn.published import load_published
    from arnn.results import build_rows, render

    def final(seed: int, status: str, accuracy: float, start: int) -> dict:
        return {
            "run_id": f"r{seed}",
            "status": "FINISHED",
            "start_time": start,
            "params.seed": str(seed),
            "metrics.test_accuracy": accuracy,
            "tags.arnn.status": status,
            "tags.arnn.kind": "trial",
            "tags.arnn.stage": "final",
            "tags.arnn.cell_task": "mnist",
            "tags.arnn.cell_model": "antisymmetric",
            "tags.arnn.budget": "smoke",
            "tags.arnn.units": "128",
            "tags.arnn.parameters": "9674",
        }

    asked = {
        **final(1003, "", float("nan"), 0),  # the final sweep's own run
        "tags.arnn.kind": "sweep",
        "params.seed": None,
        "tags.arnn.final_seeds": "[1000, 1001, 1002, 1003]",
    }
    frame = pd.DataFrame(
        [
            asked,
            final(0, "finished", 0.99, 1),  # a final run from before final seeds were apart
            final(1000, "finished", 0.9, 1),
            final(1001, "diverged", 0.1, 2),
            final(1002, "failed", float("nan"), 3),
            final(1002, "finished", 0.8, 4),  # run again after it failed
        ]
    )
    frame.loc[4, "status"] = "FAILED"
    (table,) = [t for t in load_published(REPRODUCE / "published.yaml") if t.id == 1]
    rows = build_rows(table, frame)
    (row,) = [r for r in rows if r.published.model == "antisymmetric"]
    cell = row.cells["mnist"]
    assert (cell.n, cell.asked, cell.diverged) == (2, 4, 1)
    assert round(cell.mean, 1) == 85.0 and round(cell.std, 1) == 7.1
    text = render(table, rows, "markdown", "fill")
    assert "85.0 ± 7.1 (n=2/4, 1 diverged, smoke)" in text


def test_run_on_a_cluster_refuses_a_tracking_file_on_this_machine(tmp_path):
    done = _script("run.py", "--table", "1", "--address", "auto", cwd=tmp_path, timeout=120)
    assert done.returncode == 2
    assert done.stderr.startswith("run.py: error: --tracking-uri: sqlite:///")
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "mlflow.db").exists()


def test_an_empty_store_has_no_final_seeds():
    """runs_frame gives a frame without columns for an empty store: run.py's first call."""
    import pandas as pd

    from arnn.results import final_outcomes_by_seed

    assert final_outcomes_by_seed(pd.DataFrame()) == {}
