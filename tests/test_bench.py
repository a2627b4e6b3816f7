from __future__ import annotations

from arnn.cli import main


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
        "antisymmetric,lstm",
        "--device",
        "cpu",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    table = out.split("\n\n")[1].splitlines()
    assert table[0].split() == ["model", "ms/batch", "x", "nn.RNN(tanh)"]
    rows = {line.rsplit(None, 2)[0]: line.rsplit(None, 2)[1:] for line in table[1:]}
    assert set(rows) == {"antisymmetric", "torch nn.LSTM", "torch nn.RNN(tanh)"}
    assert float(rows["torch nn.RNN(tanh)"][1]) == 1.0
    assert all(float(ms) > 0 for ms, _ in rows.values())


def test_bench_refuses_bad_shapes(capsys):
    assert main(["bench", "--steps", "0"]) == 2
    assert capsys.readouterr().err == "arnn: error: --steps: must be >= 1, got 0\n"
