"""Speed of the recurrences: milliseconds per batch for forward+backward, measured side by
side in one run and printed as ratios (`arnn bench`, `python -m arnn.bench`).

Rows: the antisymmetric cells on the eager PyTorch path (RecurrenceScan), and on a GPU
also that path captured whole in a CUDA graph and the fused Triton kernel; torch's own
nn.RNN(tanh), nn.GRU and nn.LSTM (cuDNN on a GPU). Shapes: MNIST (B=128, T=784, H=128,
m=1) and CIFAR (B=128, T=1024, H=256, m=3), or your own.

Timed tests would be noise on shared machines; this prints numbers to compare instead.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pandas as pd
import torch

from arnn.errors import UsageError
from arnn.kernels import FUSED_MAX_HIDDEN, fused_fits
from arnn.models import create_model, list_models
from arnn.tables import console

SHAPES = {"mnist": (128, 784, 128, 1), "cifar": (128, 1024, 256, 3)}  # B, T, H, m
DEFAULT_MODELS = (
    "antisymmetric",
    "antisymmetric_gated",
    "cornn",
    "lem",
    "lipschitz",
    "unicornn",
    "rnn",
    "gru",
    "lstm",
)
BASELINE = "torch nn.RNN(tanh)"
REFERENCE = "antisymmetric (eager)"  # the successors' rows carry their ratio to it
# Rows beyond the model's defaults: each integrator of a model that has several.
VARIANTS = {"lipschitz": (("euler", {"scheme": "euler"}), ("midpoint", {"scheme": "midpoint"}))}
TORCH_LABELS = {"rnn": BASELINE, "gru": "torch nn.GRU", "lstm": "torch nn.LSTM"}


@dataclass(frozen=True)
class Entry:
    label: str
    model: str
    kernel: str = "auto"
    graphed: bool = False
    options: tuple[tuple[str, object], ...] = ()  # the model's own options


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--models",
        default=",".join(DEFAULT_MODELS),
        help=f"comma-separated models (default: {','.join(DEFAULT_MODELS)})",
    )
    parser.add_argument(
        "--shape",
        choices=[*SHAPES, "all"],
        help="mnist, cifar or all (default: all on a GPU, mnist on a CPU)",
    )
    parser.add_argument("--batch", type=int, help="batch size B (a custom shape)")
    parser.add_argument("--steps", type=int, help="sequence length T (a custom shape)")
    parser.add_argument("--hidden", type=int, help="hidden units H (a custom shape)")
    parser.add_argument("--input-size", type=int, help="input size m (a custom shape)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats (default 5)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")


def entries(models: list[str], cuda: bool) -> list[Entry]:
    rows = []
    for name in models:
        if name in TORCH_LABELS:
            rows.append(Entry(TORCH_LABELS[name], name))
        elif name.startswith("antisymmetric") or name == "ablation":
            rows.append(Entry(f"{name} (eager)", name, "eager"))
            if cuda:
                rows.append(Entry(f"{name} (eager, CUDA graph)", name, "eager", graphed=True))
                rows.append(Entry(f"{name} (fused)", name, "fused"))
            if name == "antisymmetric":  # the other integrators (eager only)
                for scheme in ("midpoint", "rk4", "leapfrog"):
                    options = (("scheme", scheme),)
                    rows.append(Entry(f"{name} ({scheme})", name, "eager", options=options))
        elif name in VARIANTS:
            for label, options in VARIANTS[name]:
                rows.append(Entry(f"{name} ({label})", name, options=tuple(options.items())))
        else:
            rows.append(Entry(name, name))
    if not any(row.label == BASELINE for row in rows):
        rows.append(Entry(BASELINE, "rnn"))
    return rows


def time_forward_backward(
    steps: dict[str, Callable[[], None]], repeats: int, cuda: bool, rounds: int = 3
) -> dict[str, float]:
    """Median milliseconds per call.

    Each row is timed in blocks (a warm-up, then repeats in a row), so that what one row
    leaves in the allocator does not slow or speed the next; and the blocks go round the
    rows `rounds` times, so that a machine that slows down or speeds up during the run
    (shared machines do) shifts every row alike and the ratios hold.
    """
    times: dict[str, list[float]] = {name: [] for name in steps}
    per_block = max(1, -(-repeats // rounds))
    for _ in range(rounds):
        for name, step in steps.items():
            step()
            times[name] += [_elapsed_ms(step, cuda) for _ in range(per_block)]
    return {name: statistics.median(values) for name, values in times.items()}


def _step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, graphed: bool):
    def step():
        model.zero_grad(set_to_none=not graphed)
        torch.nn.functional.cross_entropy(model(x), y).backward()

    if not graphed:
        return step
    # Capture forward+backward whole; warm up on a side stream first, as CUDA graphs need.
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(2):
            step()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        torch.nn.functional.cross_entropy(model(x), y).backward()
    return graph.replay


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


def _shapes(args, cuda: bool) -> dict[str, tuple[int, int, int, int]]:
    custom = [args.batch, args.steps, args.hidden, args.input_size]
    if any(value is not None for value in custom):
        base = SHAPES[args.shape if args.shape in SHAPES else "mnist"]
        return {
            "custom": tuple(v if v is not None else b for v, b in zip(custom, base, strict=True))
        }
    chosen = args.shape or ("all" if cuda else "mnist")
    return dict(SHAPES) if chosen == "all" else {chosen: SHAPES[chosen]}


def run(args: argparse.Namespace) -> int:
    models = [name.strip() for name in args.models.split(",") if name.strip()]
    unknown = [name for name in models if name not in list_models()]
    if unknown:
        raise UsageError(
            f"--models: unknown {', '.join(unknown)}; allowed: {', '.join(list_models())}"
        )
    for flag in ("batch", "steps", "hidden", "input_size", "repeats"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise UsageError(f"--{flag.replace('_', '-')}: must be >= 1, got {value}")
    if args.device not in ("auto", "cpu", "cuda"):
        raise UsageError(f"--device: auto, cpu or cuda, got {args.device!r}")
    cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    if cuda and not torch.cuda.is_available():
        raise UsageError("--device: cuda asked for, but no CUDA device is available")
    device = torch.device("cuda" if cuda else "cpu")
    rows = entries(models, cuda)
    print(
        f"forward+backward per batch, {device} ({_device_name(device)}), torch "
        f"{torch.__version__}, {torch.get_num_threads()} threads, median of {args.repeats}",
        flush=True,
    )
    for shape_name, (batch, steps, hidden, inputs) in _shapes(args, cuda).items():
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(batch, steps, inputs, generator=generator).to(device)
        y = torch.randint(0, 10, (batch,), generator=generator).to(device)
        timed = [row for row in rows if row.kernel != "fused" or fused_fits(hidden)]
        calls = {}
        for row in timed:
            torch.manual_seed(0)
            model = create_model(
                row.model,
                input_size=inputs,
                output_size=10,
                hidden=hidden,
                kernel=row.kernel,
                model_options=dict(row.options),
            ).to(device)
            calls[row.label] = _step(model, x, y, row.graphed)
        timings = time_forward_backward(calls, args.repeats, cuda)
        _print_table(
            f"{shape_name}: B={batch} T={steps} H={hidden} m={inputs}", timed, timings, cuda
        )
        if len(timed) < len(rows):
            print(f"(fused: not timed, H={hidden} is above its limit of {FUSED_MAX_HIDDEN})")
    return 0


def _print_table(title: str, rows: list[Entry], timings: dict[str, float], cuda: bool) -> None:
    base = timings[BASELINE]
    reference = timings.get(REFERENCE)
    table = pd.DataFrame({"model": [row.label for row in rows]})
    table["ms/batch"] = [timings[row.label] for row in rows]
    table["x nn.RNN(tanh)"] = table["ms/batch"] / base
    if reference:
        table["x antisymmetric"] = table["ms/batch"] / reference
    if cuda:
        fused = [
            timings.get(f"{row.model} (fused)") or timings.get("antisymmetric (fused)")
            for row in rows
        ]
        table["x fused"] = [
            f"{ms / f:.2f}" if f else "" for ms, f in zip(table["ms/batch"], fused, strict=True)
        ]
    print(f"\n{title}\n{console(table)}", flush=True)


def _device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m arnn.bench`: needs only torch (and triton for the fused rows), so that it
    runs on a bare GPU machine with PYTHONPATH=platform."""
    parser = argparse.ArgumentParser(prog="arnn bench", description=__doc__.splitlines()[0])
    add_arguments(parser)
    try:
        return run(parser.parse_args(argv))
    except UsageError as error:
        print(f"arnn: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
