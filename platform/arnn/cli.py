"""The `arnn` command: argument parsing, and bad input as one line with exit code 2.

Subcommands stay thin: they parse, build a validated config, call the library, print.
Heavy imports (torch, MLflow) happen inside the subcommand that needs them: `arnn --help`
imports neither.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from arnn import record
from arnn.errors import UsageError
from arnn.interrupt import Interrupted

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse, but its errors are ours: one line, exit code 2, no usage dump."""

    def error(self, message: str):
        raise UsageError(message)


DESCRIPTION = """\
arnn trains and searches AntisymmetricRNN (Chang et al., ICLR 2019) and the recurrent
networks that descend from it (coRNN, LEM, Lipschitz RNN, UnICORNN): one configuration
with `arnn train`, a search space with `arnn sweep` (Ray Tune schedules the trials, Optuna
samples them, ASHA stops the hopeless ones), every run tracked in MLflow (`arnn ui`)."""

EPILOG = """\
examples:
  arnn models                                   the models, their options and sizes
  arnn train --model antisymmetric --eps 0.1 --epochs 2 --subset 2000
  arnn sweep search_spaces/demo.yaml            8 trials on an embedded Ray
  arnn ui                                       browse the runs on http://127.0.0.1:5000
  arnn report SWEEP                             a sweep's plots and table, again
the paper's tables: python reproduce/run.py --table 1, then python reproduce/table.py"""


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # `arnn bench`'s flags need torch to be listed: built only when it is the command, so
    # that every other command refuses bad input before torch loads.
    parser = _build_parser(with_bench=bool(argv) and argv[0] == "bench")
    try:
        args = parser.parse_args(argv)
        if not hasattr(args, "run"):
            parser.print_help()
            return EXIT_USAGE
        return args.run(args) or 0
    except UsageError as error:
        print(f"arnn: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except Interrupted as stopped:  # what it stopped has said so, and how to go on
        return stopped.exit_code


def _build_parser(with_bench: bool = True) -> argparse.ArgumentParser:
    parser = _Parser(
        prog="arnn",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(title="commands", parser_class=_Parser)
    _add_train(commands)
    _add_listings(commands)
    _add_sweep(commands)
    _add_ui(commands)
    _add_report(commands)
    bench = commands.add_parser("bench", help="time forward+backward of the recurrences")
    if with_bench:
        from arnn.bench import add_arguments as add_bench_arguments
        from arnn.bench import run as run_bench

        add_bench_arguments(bench)
        bench.set_defaults(run=run_bench)
    return parser


def _add_train(commands) -> None:
    train = commands.add_parser("train", help="train one configuration, tracked in MLflow")
    _add_config_flags(train)
    _add_tracking_flags(train)
    train.add_argument("--run-name", help="MLflow run name")
    train.add_argument(
        "--checkpoint-dir",
        help="checkpoint here after each epoch; a run "
        "given a folder that holds a checkpoint continues from it",
    )
    train.set_defaults(run=_run_train)


def _add_listings(commands) -> None:
    models = commands.add_parser("models", help="list the models and their parameter counts")
    models.add_argument("--task", default="mnist", help="task that sets input and output sizes")
    models.add_argument("--hidden", default="128", help="hidden units")
    models.set_defaults(run=_run_models)
    tasks = commands.add_parser("tasks", help="list the tasks, their shapes and options")
    tasks.set_defaults(run=_run_tasks)


def _add_sweep(commands) -> None:
    from arnn.sweep.request import add_flags

    sweep = commands.add_parser("sweep", help="run a search space on Ray Tune, tracked in MLflow")
    add_flags(sweep)  # every field of a SweepRequest that is a flag
    sweep.set_defaults(run=_run_sweep)


def _add_ui(commands) -> None:
    ui = commands.add_parser("ui", help="the MLflow UI on the tracking store, on 127.0.0.1")
    ui.add_argument(
        "--tracking-uri", help="default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db"
    )
    ui.add_argument(
        "--experiment", default="arnn", help="experiment whose runs the printed URL opens"
    )
    ui.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    ui.add_argument("--port", type=int, default=5000, help="port (default 5000)")
    ui.set_defaults(run=_run_ui)


def _add_report(commands) -> None:
    report = commands.add_parser(
        "report", help="a sweep's plots and trial table, again, from MLflow alone"
    )
    report.add_argument("sweep", help="the sweep's name (or its MLflow run id)")
    _add_tracking_flags(report)
    report.add_argument(
        "--out", help="write the files into this folder (default: artifacts of the sweep's run)"
    )
    report.set_defaults(run=_run_report)


def _add_tracking_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tracking-uri",
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)",
    )
    parser.add_argument("--experiment", default="arnn", help="MLflow experiment (default: arnn)")


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field, named by `flag_label`, described by the field; and
    the short forms of the model options that many models share (--eps, ...)."""
    from arnn.config import FLAT_FIELDS, MODEL_SHORT_FORMS, SECTIONS, TrainConfig, flag_label

    for name in MODEL_SHORT_FORMS:
        parser.add_argument(
            flag_label(name),
            dest=name,
            default=argparse.SUPPRESS,
            metavar=name.upper(),
            help=f"short for --model-option {name}=VALUE (arnn models lists the defaults)",
        )

    for name, (section, field_name) in FLAT_FIELDS.items():
        field = SECTIONS[section].model_fields[field_name]
        _add_config_flag(parser, name, field)
    _add_config_flag(parser, "seed", TrainConfig.model_fields["seed"])


def _add_config_flag(parser: argparse.ArgumentParser, name: str, field) -> None:
    from arnn.config import flag_label

    flag = flag_label(name)
    if name in ("task_options", "model_options"):
        parser.add_argument(
            flag,
            dest=name,
            action="append",
            metavar="KEY=VALUE",
            default=argparse.SUPPRESS,
            help=field.description,
        )
    elif name == "download":
        parser.add_argument(
            flag,
            dest=name,
            action="store_const",
            const=False,
            default=argparse.SUPPRESS,
            help="never download missing data",
        )
    else:
        default = "" if field.default is None else f" (default: {field.default})"
        parser.add_argument(
            flag,
            dest=name,
            default=argparse.SUPPRESS,
            metavar=name.upper(),
            help=f"{field.description}{default}",
        )


def _config_from_args(args: argparse.Namespace):
    from arnn.config import FLAT_FIELDS, MODEL_SHORT_FORMS, TrainConfig, flag_label

    settings = {*FLAT_FIELDS, "seed", *MODEL_SHORT_FORMS}
    values = {k: v for k, v in vars(args).items() if k in settings}
    for name in ("task_options", "model_options"):
        if name in values:
            values[name] = _key_values(values[name], flag_label(name))
    return TrainConfig.parse(values, label=flag_label)


def _key_values(items: list[str], flag: str) -> dict[str, str]:
    pairs = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"{flag}: expected KEY=VALUE, got {item!r}")
        pairs[key] = value
    return pairs


def _run_train(args: argparse.Namespace) -> int:
    config = _config_from_args(args)  # bad flags are refused before torch or MLflow load
    import tempfile
    from pathlib import Path

    from arnn.interrupt import StopSignals
    from arnn.models import count_parameters
    from arnn.sweep.names import train_name
    from arnn.tasks import create_task
    from arnn.tracking import (
        TrackedRun,
        absolute_tracking_uri,
        browse_hint,
        config_params,
        resolve_tracking_uri,
        run_tags,
    )
    from arnn.train import build_model, kernel_path, load_data, resolve_device

    device = resolve_device(config.runtime.device)
    kernel = kernel_path(config, device)  # refuses a fused kernel where it cannot run
    task = create_task(config.task.name, config.task.options)
    data = load_data(config, task)  # missing data ends here, before any MLflow run
    tags = run_tags(config, str(device), kernel)
    tags[record.PARAMETERS] = str(count_parameters(build_model(config, task)))
    tags[record.KIND] = record.TRAIN_RUN
    checkpoint_dir = Path(args.checkpoint_dir) if args.checkpoint_dir else None
    tracking_uri = absolute_tracking_uri(resolve_tracking_uri(args.tracking_uri))
    run = _resumed_run(checkpoint_dir, tracking_uri)  # a resumed run keeps its MLflow run
    if run is None:
        run = TrackedRun.start(
            tracking_uri=tracking_uri,
            experiment=args.experiment,
            run_name=args.run_name or train_name(config.model.name, config.task.name),
            params=config_params(config),
            tags=tags,
        )
        if checkpoint_dir is not None:
            checkpoint_dir.mkdir(parents=True, exist_ok=True)
            saved = {"tracking_uri": tracking_uri, "run_id": run.run_id}
            (checkpoint_dir / RUN_RECORD).write_text(json.dumps(saved))
    print(
        f"{config.model.name} on {config.task.name}: {tags[record.PARAMETERS]} parameters, "
        f"{len(data.train)} train / {len(data.val)} val / {len(data.test)} test, "
        f"{device} ({kernel}); MLflow run {run.run_id}\n"
        f"browse it: {browse_hint(tracking_uri, args.experiment)}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="arnn-train-") as scratch:
        # Without --checkpoint-dir, checkpoints go to a scratch folder all the same: an
        # interrupted or crashed run still leaves its best weights with its MLflow run.
        return _train_tracked(config, data, run, checkpoint_dir or Path(scratch), StopSignals())


def _train_tracked(config, data, run, checkpoint_dir, stop) -> int:
    """Train, log every epoch to `run`, and close it with what happened."""
    from tqdm import tqdm

    from arnn.interrupt import Interrupted
    from arnn.train import read_checkpoint, train

    def report(metrics, checkpoint_dir):
        run.log_epoch(metrics)
        print(
            f"epoch {metrics.epoch:>3}  train loss {metrics.train_loss:.4f} "
            f"acc {metrics.train_accuracy:.4f}  val loss {metrics.val_loss:.4f} "
            f"acc {metrics.val_accuracy:.4f}  {metrics.seconds:.1f} s",
            flush=True,
        )

    def progress(iterable, total, description):
        return tqdm(iterable, total=total, desc=description, leave=False, disable=None)

    def keep_best_weights() -> None:
        saved = read_checkpoint(checkpoint_dir)
        if saved is not None and saved["best_state"] is not None:
            run.log_weights(saved["best_state"], config)

    try:
        with stop:
            result = train(
                config, report=report, data=data, progress=progress, checkpoint_dir=checkpoint_dir
            )
    except KeyboardInterrupt as error:
        keep_best_weights()
        run.close("KILLED", "interrupted")
        code = error.exit_code if isinstance(error, Interrupted) else 130
        print(f"interrupted; MLflow run {run.run_id} closed KILLED", file=sys.stderr)
        return code
    except BaseException:
        keep_best_weights()
        run.close("FAILED", "failed")
        raise
    run.log_result(result, config)
    run.finish("FINISHED")
    if result.status == "diverged":
        print(f"diverged: {result.diverged_at}; {len(result.history)} full epochs before it")
    test = "n/a" if result.test_accuracy is None else f"{result.test_accuracy:.4f}"
    print(
        f"test accuracy {test}  ({result.status}; best epoch {result.best_epoch})  "
        f"MLflow run {run.run_id}"
    )
    return 0


RUN_RECORD = "mlflow_run.json"  # in a checkpoint folder: the MLflow run it belongs to


def _resumed_run(checkpoint_dir, tracking_uri: str):
    """The MLflow run of an interrupted `arnn train --checkpoint-dir`, reopened."""
    from arnn.tracking import TrackedRun

    if checkpoint_dir is None or not (checkpoint_dir / RUN_RECORD).exists():
        return None
    saved = json.loads((checkpoint_dir / RUN_RECORD).read_text())
    if saved.get("tracking_uri") != tracking_uri:
        return None
    return TrackedRun.attach(tracking_uri=tracking_uri, run_id=saved["run_id"])


def _run_sweep(args: argparse.Namespace) -> int:
    from arnn.sweep.request import make_request
    from arnn.sweep.spec import load_spec

    request = make_request(vars(args))
    load_spec(request.spec)  # a bad spec is refused before torch, Ray or MLflow load
    from arnn.sweep.driver import run

    return 1 if run(request).every_trial_failed else 0


def _run_report(args: argparse.Namespace) -> int:
    from arnn.sweep.report import write_report
    from arnn.tracking import absolute_tracking_uri, resolve_tracking_uri

    uri = absolute_tracking_uri(resolve_tracking_uri(args.tracking_uri))
    files = write_report(uri, args.experiment, args.sweep, out=args.out)
    for note in files.notes:
        print(f"note: {note}")
    print(f"{', '.join(files.files)} in {files.location}")
    return 0


def _run_ui(args: argparse.Namespace) -> int:
    from arnn.ui_server import port_in_use, server_command

    if port_in_use(args.host, args.port):  # refused before torch and MLflow load
        raise UsageError(
            f"--port: {args.host}:{args.port} is in use (another arnn ui?); stop that, "
            "or choose another --port"
        )
    from arnn.tracking import resolve_tracking_uri, save_runs_view, ui_url

    uri = resolve_tracking_uri(args.tracking_uri)
    if uri.startswith(("http://", "https://")):
        raise UsageError(f"--tracking-uri: {uri} is a server already; open it in a browser")
    base = f"http://{args.host}:{args.port}"
    save_runs_view(uri, args.experiment)
    runs = ui_url(uri, args.experiment, base=base)
    print(f"starting the MLflow UI on {base} for {uri} ...", flush=True)
    ready = f"MLflow UI ready, experiment {args.experiment}: {runs} (Ctrl-C stops it)"
    return _serve_ui(server_command(uri, args.host, args.port), base, ready)


def _serve_ui(command: list[str], base: str, ready: str) -> int:
    """Run the server until it ends or a signal stops it; print `ready` once it answers."""
    import os

    from arnn.interrupt import StopSignals
    from arnn.ui_server import Server, ServerFailed, server_environment

    try:
        with StopSignals(), Server(command, server_environment(os.environ), base) as server:
            server.wait_until_answering()
            print(ready, flush=True)
            code = server.wait()
    except ServerFailed as failure:
        print(f"arnn ui: {failure}", file=sys.stderr)
        return 1
    except Interrupted as stopped:
        print(f"arnn ui: stopped by {stopped.name}; the MLflow UI on {base} is down", flush=True)
        raise
    print(f"arnn ui: the MLflow server ended by itself, with code {code}", file=sys.stderr)
    return 0 if code == 0 else 1


def _run_models(args: argparse.Namespace) -> int:
    from arnn.config import TrainConfig, flag_label
    from arnn.models import count_parameters, list_models, model_entry
    from arnn.models._registry import describe_options
    from arnn.paper import PAPER_PARAMETERS
    from arnn.tasks import create_task
    from arnn.train import build_model

    rows = []
    for name in list_models():
        config = TrainConfig.parse(
            {"task": args.task, "model": name, "hidden": args.hidden}, label=flag_label
        )
        count = count_parameters(build_model(config, create_task(config.task.name)))
        paper = PAPER_PARAMETERS.get((name, config.task.name, config.model.hidden), "")
        options = "; ".join(describe_options(model_entry(name).options.model_fields)) or "-"
        rows.append((name, str(config.model.hidden), str(count), paper, options))
    _print_table(("model", "units", "params", "paper", "options (default, allowed)"), rows)
    return 0


def _run_tasks(args: argparse.Namespace) -> int:
    from arnn.tasks import create_task, list_tasks, task_entry

    rows = []
    for name in list_tasks():
        entry, task = task_entry(name), create_task(name)
        options = ", ".join(f"{k}={f.default}" for k, f in entry.options.model_fields.items())
        rows.append(
            (
                name,
                str(task.seq_len),
                str(task.input_size),
                str(task.output_size),
                options or "-",
                entry.description,
            )
        )
    _print_table(("task", "T", "m", "outputs", "options (defaults)", "description"), rows)
    return 0


def _print_table(header: Sequence[str], rows: list[Sequence[str]]) -> None:
    import pandas as pd

    from arnn.tables import console

    print(console(pd.DataFrame(rows, columns=list(header))))
