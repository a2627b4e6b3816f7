"""What reproduce/run.py prints, on one cell of Table 1 through real sweeps on a local Ray:
the command that goes on after an interruption, and final runs summarised as seeds."""

from __future__ import annotations

import re
import shlex
import signal
import sys
import time

from tests.datasets import write_mnist
from tests.reproduce.test_tables import REPRODUCE, _script, interrupt_mid_search


def test_an_interrupted_run_names_its_own_command_and_final_runs_print_their_seeds(tmp_path):
    """SIGINT during the search: the line that resumes it is run.py's command, as typed,
    not an internal call. Run again: the search resumes (its clock from this run), and the
    final runs end with their seeds' mean ± std, never a "best trial" among replicas."""
    data = write_mnist(tmp_path / "data", train=1200, test=300)
    args = [
        *("--table", "1", "--budget", "smoke", "--model", "antisymmetric", "--task", "mnist"),
        *("--seeds", "1", "--data-dir", str(data)),
        *("--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"),
        *("--storage-path", str(tmp_path / "ray")),
    ]
    command = [sys.executable, str(REPRODUCE / "run.py"), *args]
    returncode, output, errors = interrupt_mid_search(command, tmp_path, signal.SIGINT)
    assert returncode == 130, errors[-3000:]
    # Run from tmp_path, outside the checkout: the Python and the script by absolute path.
    again = shlex.join(command)
    assert f"\nresume it with: {again}\n" in errors, errors[-3000:]
    stopped = f"table1_mnist_antisymmetric: interrupted by SIGINT; go on from here with: {again}"
    assert f"{stopped}\n" in output, output

    began = time.monotonic()
    done = _script("run.py", *args, cwd=tmp_path)
    took = time.monotonic() - began
    assert done.returncode == 0, done.stderr[-3000:]
    search, final = done.stdout.split("sweep table1_mnist_antisymmetric-smoke-final-1000-1000: ")
    assert "sweep table1_mnist_antisymmetric-smoke-search: 2 trials of mnist" in search
    first = next(line for line in search.splitlines() if re.match(r"\[ *\d+ s\] ", line))
    assert int(first[1:].split(" s]")[0]) <= took, (first, took)

    assert final.startswith("1 final run of mnist / antisymmetric, at most 2 at once; ")
    assert "\n1 final run: 1 finished, 0 pruned," in final, final
    seeds = re.search(
        r"\n1 seed finished: best val_accuracy \d\.\d{4}, test_accuracy \d\.\d{4}\n", final
    )
    assert seeds, final
    assert "best trial" not in final and "best finished" not in final, final
    assert "seed 1000  finished" in final, final  # its row in the table, by its run's name
