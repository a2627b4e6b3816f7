"""reproduce/run.py and reproduce/table.py end to end: one cell of Table 1 on generated
MNIST through real sweeps on a local Ray, then the table read back from MLflow."""

from __future__ import annotations

import subprocess
import sys
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


def test_an_empty_store_still_prints_the_published_tables(tmp_path):
    done = _script("table.py", "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "| AntisymmetricRNN | 98.0 | no runs yet |" in out
    assert "| KRU (Jose et al., 2017) | 96.4 | cited |" in out
    assert "| AntisymmetricRNN w/ gating | 62.2 | no runs yet |" in out  # Table 2
    assert "Successors on the same benchmarks" in out and "| 62.4 |" in out
    assert "fill them with: python reproduce/run.py --table 1 --budget smoke" in out


def test_run_fills_a_cell_then_skips_it_and_table_shows_it(tmp_path):
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
    done = _script("run.py", *args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "table1_mnist_antisymmetric: done with" in done.stdout

    again = _script("run.py", *args, cwd=tmp_path)
    assert again.returncode == 0 and "table1_mnist_antisymmetric: complete already" in again.stdout

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
    row = next(line for line in text.splitlines() if line.startswith("| AntisymmetricRNN |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "98.0" and "(n=2, smoke)" in cells[2] and cells[3].startswith("-")
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
