"""Speed of the recurrences: milliseconds per batch for forward+backward, measured side by
side in one run and printed as ratios (`arnn bench`, `python -m arnn.bench`).

Timed tests would be noise on shared machines; this prints numbers to compare instead.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence

import torch

from arnn.errors import UsageError
from arnn.models import create_model, list_models

# The baseline every ratio is taken against: torch's own tanh RNN (cuDNN on GPU), which has
# the same dependency chain and arithmetic per step as the antisymmetric cell.
BASELINE = "rnn"
DEFAULT_MODELS = ("antisymmetric", "antisymmetric_gated", "rnn", "lstm")
LABELS = {"rnn": "torch nn.RNN(tanh)", "lstm": "torch nn.LSTM", "gru": "torch nn.GRU"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--models",
        default=",".join(DEFAULT_MODELS),
        help=f"comma-separated models (default: {','.join(DEFAULT_MODELS)})",
    )
    parser.add_argument("--batch", type=int, default=128, help="batch size B (default 128)")
    parser.add_argument("--steps", type=int, default=784, help="sequence length T (default 784)")
    parser.add_argument("--hidden", type=int, default=128, help="hidden units H (default 128)")
    parser.add_argument("--input-size", type=int, default=1, help="input size m (default 1)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats (default 5)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")


def time_forward_backward(
    models: dict[str, torch.nn.Module], x: torch.Tensor, y: torch.Tensor, repeats: int
) -> dict[str, float]:
    """Median milliseconds of one forward+backward per model, after one untimed warm-up.

    The repeats go round the models in turn, so that a machine that slows down or speeds
    up during the run (shared machines do) shifts every model alike and the ratios hold.
    """
    steps = {name: _forward_backward(model, x, y) for name, model in models.items()}
    for step in steps.values():
        step()
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(repeats):
        for name, step in steps.items():
            times[name].append(_elapsed_ms(step, x.is_cuda))
    return {name: statistics.median(values) for name, values in times.items()}


def _forward_backward(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor):
    def step():
        model.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()

    return step


def _elapsed_ms(step, cuda: bool) -> float:
    if cuda:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        step()
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end)
    started = time.perf_counter()
    step()
    return (time.perf_counter() - started) * 1000


def run(args: argparse.Namespace) -> int:
    models = [name.strip() for name in args.models.split(",") if name.strip()]
    unknown = [name for name in models if name not in list_models()]
    if unknown:
        raise UsageError(
            f"--models: unknown {', '.join(unknown)}; allowed: {', '.join(list_models())}"
        )
    for flag in ("batch", "steps", "hidden", "input_size", "repeats"):
        if getattr(args, flag) < 1:
            raise UsageError(f"--{flag.replace('_', '-')}: must be >= 1, got {getattr(args, flag)}")
    if BASELINE not in models:
        models.append(BASELINE)
    device = torch.device(
        "cuda"
        if args.device == "auto" and torch.cuda.is_available()
        else ("cpu" if args.device == "auto" else args.device)
    )

    generator = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, args.steps, args.input_size, generator=generator).to(device)
    y = torch.randint(0, 10, (args.batch,), generator=generator).to(device)
    print(
        f"forward+backward, B={args.batch} T={args.steps} H={args.hidden} "
        f"m={args.input_size}, {device} ({_device_name(device)}), torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, median of {args.repeats}",
        flush=True,
    )
    built = {}
    for name in models:
        torch.manual_seed(0)
        built[name] = create_model(
            name, input_size=args.input_size, output_size=10, hidden=args.hidden
        ).to(device)
    timings = time_forward_backward(built, x, y, args.repeats)

    base = timings[BASELINE]
    width = max(len(LABELS.get(n, n)) for n in timings)
    print(f"\n{'model'.ljust(width)}  {'ms/batch':>9}  {'x nn.RNN(tanh)':>14}")
    for name, ms in timings.items():
        print(f"{LABELS.get(name, name).ljust(width)}  {ms:9.1f}  {ms / base:14.2f}")
    return 0


def _device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"


def main(argv: Sequence[str] | None = None) -> int:
    from arnn.cli import main as cli_main

    return cli_main(["bench", *(argv if argv is not None else __import__("sys").argv[1:])])


if __name__ == "__main__":
    raise SystemExit(main())
