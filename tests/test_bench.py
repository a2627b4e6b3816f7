from __future__ import annotations

from arnn.cli import main


def _table(out: str) -> dict[str, list[str]]:
    lines = out.split("\n\n")[1].splitlines()
    assert lines[1].split() == ["model", "ms/batch", "x", "nn.RNN(tanh)", "x", "antisymmetric"]
    return {line.rsplit(None, 3)[0]: line.rsplit(None, 3)[1:] for line in lines[2:]}


def test_bench_prints_each_model_and_its_ratio_to_torch_rnn(capsys):
    args = [
        "bench",
        "--batch",
        "4",
        "--steps",
        "12",
        "--hidden",
        "8",
        "--repeats",
        "2",
        "--models",
        "antisymmetric,lstm,cornn,lipschitz",
        "--device",
        "cpu",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "custom: B=4 T=12 H=8 m=1" in out
    rows = _table(out)
    assert set(rows) == {
        "antisymmetric (eager)",
        "antisymmetric (midpoint)",
        "antisymmetric (rk4)",
        "antisymmetric (leapfrog)",
        "torch nn.LSTM",
        "torch nn.RNN(tanh)",
        "cornn",
        "lipschitz (euler)",
        "lipschitz (midpoint)",
    }
    assert float(rows["torch nn.RNN(tanh)"][1]) == 1.0
    assert float(rows["antisymmetric (eager)"][2]) == 1.0
    assert all(float(ms) > 0 for ms, _, _ in rows.values())


def test_bench_refuses_bad_shapes(capsys):
    assert main(["bench", "--steps", "0"]) == 2
    assert capsys.readouterr().err == "arnn: error: --steps: must be >= 1, got 0\n"
