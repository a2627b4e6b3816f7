"""One training run: `train(config, report=...) -> Result`.

The loop knows nothing of MLflow or Ray Tune: after each epoch it writes a checkpoint (when
given a directory) and calls `report(metrics, checkpoint_dir)`; whoever called it decides
where the numbers go.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import pydantic
import torch

from arnn.config import TrainConfig, dotted
from arnn.data import Data, batches, num_batches, prepare_data, resolve_data_dir
from arnn.errors import UsageError
from arnn.kernels import check_kernel, resolve_kernel
from arnn.models import count_parameters, create_model, model_entry
from arnn.tasks import create_task
from arnn.tasks._base import Split, Task

CHECKPOINT_FILE = "checkpoint.pt"
# Noise-padded tasks draw evaluation noise from fixed seeds, so that every run and every
# epoch is scored on the same validation and test sequences.
VAL_NOISE_SEED, TEST_NOISE_SEED = 1_000_003, 2_000_003
Status = Literal["finished", "diverged"]


@dataclass
class EpochMetrics:
    epoch: int
    step: int
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float
    lr: float
    seconds: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass
class Result:
    status: Status
    device: str
    kernel: str  # the path the recurrence took: eager or fused
    parameters: int
    history: list[EpochMetrics]
    diverged_at: str | None = None  # what ended a diverged run, and when
    best_epoch: int | None = None
    best_val_accuracy: float | None = None
    test_loss: float | None = None
    test_accuracy: float | None = None
    best_state: dict[str, torch.Tensor] | None = field(default=None, repr=False)

    @property
    def seconds_per_epoch(self) -> float | None:
        if not self.history:
            return None
        return sum(m.seconds for m in self.history) / len(self.history)


Report = Callable[[EpochMetrics, "Path | None"], None]
Progress = Callable[[Iterable, int, str], Iterable]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device: {name} asked for, but no CUDA device is available")
    return torch.device(name)


def kernel_path(config: TrainConfig, device: torch.device) -> str:
    """eager or fused: the path this run's recurrence takes on `device` (models without
    our recurrence run PyTorch's own layers: eager)."""
    if not model_entry(config.model.name).kernel_choice_applies(config.model.options):
        return "eager"
    return resolve_kernel(config.runtime.kernel, device, config.model.hidden)


def build_model(config: TrainConfig, task: Task, kernel: str | None = None) -> torch.nn.Module:
    return create_model(
        config.model.name,
        input_size=task.input_size,
        output_size=task.output_size,
        hidden=config.model.hidden,
        kernel=kernel or config.runtime.kernel,
        model_options=config.model.options,
    )


def load_data(config: TrainConfig, task: Task) -> Data:
    return prepare_data(
        task,
        data_dir=resolve_data_dir(config.runtime.data_dir),
        download=config.runtime.download,
        val_size=config.data.val_size,
        split_seed=config.data.split_seed,
        subset=config.data.subset,
    )


def train(
    config: TrainConfig,
    *,
    report: Report | None = None,
    checkpoint_dir: Path | None = None,
    progress: Progress | None = None,
    data: Data | None = None,
    score_test: bool = True,
) -> Result:
    """Train one configuration; resume from `checkpoint_dir` when it holds a checkpoint.
    The test split is scored (with the best-validation weights) only when `score_test`:
    search trials leave it for the final runs.

    A run diverges when its loss, its gradient norm or (at an epoch's end) its parameters
    are not finite; it then ends before that epoch is evaluated, checkpointed or reported."""
    t = _prepare(config, data)
    run = _RunState()
    if checkpoint_dir is not None and (Path(checkpoint_dir) / CHECKPOINT_FILE).exists():
        run = _load_checkpoint(Path(checkpoint_dir), config, t)
    progress = progress or (lambda iterable, total, description: iterable)

    diverged_at = None
    for epoch in range(run.epoch + 1, t.total_epochs + 1):
        started = time.perf_counter()
        totals = _train_epoch(t, run, epoch, progress)
        diverged_at = totals.diverged_at
        if diverged_at is not None:
            break
        lr = t.optimizer.param_groups[0]["lr"]
        if t.scheduler is not None:
            t.scheduler.step()
        val_loss, val_accuracy = evaluate(t.model, t.task, t.val, t.batch_size, VAL_NOISE_SEED)
        metrics = EpochMetrics(
            epoch=epoch,
            step=run.step,
            train_loss=totals.loss_sum / max(totals.seen, 1),
            train_accuracy=totals.correct / max(totals.scored, 1),
            val_loss=val_loss,
            val_accuracy=val_accuracy,
            lr=lr,
            seconds=time.perf_counter() - started,
        )
        run.keep(metrics, t.model)
        if checkpoint_dir is not None:
            _save_checkpoint(Path(checkpoint_dir), config, run, t)
        if report is not None:
            report(metrics, checkpoint_dir)
    return _result(t, run, diverged_at, score_test)


@dataclass
class _Training:
    """What one run trains with, built once from its configuration."""

    task: Task
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.StepLR | None
    shuffle: torch.Generator  # the batch order
    noise: torch.Generator  # the tasks' input noise
    train: Split
    val: Split
    test: Split
    device: torch.device
    kernel: str
    batch_size: int
    clip: float | None
    per_epoch: int  # batches
    total_epochs: int
    max_steps: int


def _prepare(config: TrainConfig, data: Data | None) -> _Training:
    device = resolve_device(config.runtime.device)
    check_kernel(config.runtime.kernel, device)
    kernel = kernel_path(config, device)
    task = create_task(config.task.name, config.task.options)
    data = data or load_data(config, task)
    train_split, val_split, test_split = (s.to(device) for s in (data.train, data.val, data.test))

    torch.manual_seed(config.seed)
    model = build_model(config, task, kernel).to(device)
    optimizer = _optimizer(config, model)
    schedule, batch_size = config.schedule, config.data.batch_size
    scheduler = (
        torch.optim.lr_scheduler.StepLR(optimizer, schedule.lr_decay_every, schedule.lr_decay)
        if schedule.lr_decay_every
        else None
    )
    per_epoch = num_batches(train_split, batch_size)
    unit, length = config.length
    total_epochs = length if unit == "epochs" else math.ceil(length / per_epoch)
    return _Training(
        task=task,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        shuffle=torch.Generator(device).manual_seed(config.seed),
        noise=torch.Generator(device).manual_seed(config.seed + 1),
        train=train_split,
        val=val_split,
        test=test_split,
        device=device,
        kernel=kernel,
        batch_size=batch_size,
        clip=config.optim.clip,
        per_epoch=per_epoch,
        total_epochs=total_epochs,
        max_steps=length if unit == "iterations" else total_epochs * per_epoch,
    )


@dataclass
class _EpochTotals:
    loss_sum: float = 0.0
    seen: int = 0
    correct: float = 0.0
    scored: int = 0
    diverged_at: str | None = None  # what ended the run in this epoch, and when


def _train_epoch(t: _Training, run: _RunState, epoch: int, progress: Progress) -> _EpochTotals:
    """One pass over the training batches (or what is left of the run's steps)."""
    t.model.train()
    totals = _EpochTotals()
    for inputs, targets in progress(
        batches(t.train, t.batch_size, t.shuffle), t.per_epoch, f"epoch {epoch}"
    ):
        if run.step >= t.max_steps:
            break
        outputs = t.model(t.task.to_inputs(inputs, t.noise))
        loss = t.task.loss(outputs, targets)
        if not torch.isfinite(loss):
            totals.diverged_at = f"non-finite loss at step {run.step + 1}"
            return totals
        t.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(t.model.parameters(), t.clip or math.inf)
        if not torch.isfinite(norm):
            totals.diverged_at = f"non-finite gradient norm at step {run.step + 1}"
            return totals
        t.optimizer.step()
        run.step += 1
        totals.loss_sum += loss.item() * len(targets)
        totals.seen += len(targets)
        hits, count = t.task.score(outputs.detach(), targets)
        totals.correct, totals.scored = totals.correct + hits, totals.scored + count
    if not _finite_parameters(t.model):
        totals.diverged_at = f"non-finite parameters after epoch {epoch} (step {run.step})"
    return totals


def _result(t: _Training, run: _RunState, diverged_at: str | None, score_test: bool) -> Result:
    result = Result(
        status="finished" if diverged_at is None else "diverged",
        device=str(t.device),
        kernel=t.kernel,
        parameters=count_parameters(t.model),
        history=run.history,
        diverged_at=diverged_at,
        best_epoch=run.best_epoch,
        best_val_accuracy=run.best_val_accuracy,
        best_state=run.best_state,
    )
    if score_test and run.best_state is not None:
        t.model.load_state_dict(run.best_state)
        result.test_loss, result.test_accuracy = evaluate(
            t.model, t.task, t.test, t.batch_size, TEST_NOISE_SEED
        )
    return result


@torch.inference_mode()
def evaluate(
    model: torch.nn.Module, task: Task, split: Split, batch_size: int, noise_seed: int
) -> tuple[float, float]:
    """(mean loss, accuracy) over a split, in evaluation mode."""
    model.eval()
    noise = torch.Generator(split.targets.device).manual_seed(noise_seed)
    loss_sum, correct, scored = 0.0, 0.0, 0
    for inputs, targets in batches(split, 2 * batch_size):
        outputs = model(task.to_inputs(inputs, noise))
        loss_sum += task.loss(outputs, targets).item() * len(targets)
        hits, count = task.score(outputs, targets)
        correct, scored = correct + hits, scored + count
    return loss_sum / max(len(split), 1), correct / max(scored, 1)


def _finite_parameters(model: torch.nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


# The optimisers a configuration may name, with the settings each takes from its optim
# section: an
# unknown name is a KeyError here (TrainConfig refuses it first), never a default.
OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "sgd": lambda params, c: torch.optim.SGD(
        params, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay
    ),
    "adagrad": lambda params, c: torch.optim.Adagrad(params, lr=c.lr, weight_decay=c.weight_decay),
    "adam": lambda params, c: torch.optim.Adam(params, lr=c.lr, weight_decay=c.weight_decay),
    "rmsprop": lambda params, c: torch.optim.RMSprop(
        params, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay
    ),
}


def _optimizer(config: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    return OPTIMIZERS[config.optim.name](model.parameters(), config.optim)


@dataclass
class _RunState:
    """What a checkpoint carries beside the model and optimiser."""

    epoch: int = 0
    step: int = 0
    history: list[EpochMetrics] = field(default_factory=list)
    best_epoch: int | None = None
    best_val_accuracy: float | None = None
    best_state: dict[str, torch.Tensor] | None = None

    def keep(self, metrics: EpochMetrics, model: torch.nn.Module) -> None:
        """Record an epoch; its weights become the best ones when its validation accuracy
        is the highest yet (the weights the test split is scored with: the paper's
        "test accuracy of the best validation model", whatever metric a sweep ranks by)."""
        self.epoch = metrics.epoch
        self.history.append(metrics)
        if self.best_val_accuracy is None or metrics.val_accuracy > self.best_val_accuracy:
            self.best_epoch, self.best_val_accuracy = metrics.epoch, metrics.val_accuracy
            self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}


def read_checkpoint(directory: Path) -> dict | None:
    """The checkpoint saved in `directory`, on the CPU (None when there is none)."""
    path = Path(directory) / CHECKPOINT_FILE
    if not path.exists():
        return None
    return torch.load(path, map_location="cpu", weights_only=False)


def _save_checkpoint(directory: Path, config: TrainConfig, run: _RunState, t: _Training):
    directory.mkdir(parents=True, exist_ok=True)
    checkpoint = {
        "config": config.model_dump(mode="json"),
        "epoch": run.epoch,
        "step": run.step,
        "history": [m.as_dict() for m in run.history],
        "best_epoch": run.best_epoch,
        "best_val_accuracy": run.best_val_accuracy,
        "best_state": run.best_state,
        "model": t.model.state_dict(),
        "optimizer": t.optimizer.state_dict(),
        "scheduler": t.scheduler.state_dict() if t.scheduler is not None else None,
        "rng": {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "shuffle": t.shuffle.get_state(),
            "noise": t.noise.get_state(),
        },
    }
    partial = directory / (CHECKPOINT_FILE + ".partial")
    torch.save(checkpoint, partial)
    os.replace(partial, directory / CHECKPOINT_FILE)  # never a half-written checkpoint


def _identity_differences(saved: dict, config: TrainConfig) -> str:
    """'optim.lr 0.05 (now 0.2), ...': where a checkpoint's settings differ from `config` in
    what a resumed run must keep (TrainConfig.identity); '' when they agree."""
    try:
        before = dotted(TrainConfig.model_validate(saved).identity())
    except pydantic.ValidationError:
        return "settings this version cannot read"
    now = dotted(config.identity())
    return ", ".join(
        f"{key} {before.get(key)!r} (now {now.get(key)!r})"
        for key in sorted(set(before) | set(now))
        if before.get(key) != now.get(key)
    )


def _load_checkpoint(directory: Path, config: TrainConfig, t: _Training) -> _RunState:
    path = directory / CHECKPOINT_FILE
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    differences = _identity_differences(checkpoint["config"], config)
    if differences:
        raise UsageError(f"--checkpoint-dir: {path} was made with other settings: {differences}")
    t.model.load_state_dict(checkpoint["model"])
    t.optimizer.load_state_dict(checkpoint["optimizer"])
    if t.scheduler is not None:
        t.scheduler.load_state_dict(checkpoint["scheduler"])
    rng = checkpoint["rng"]
    torch.set_rng_state(rng["torch"])
    if rng["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    t.shuffle.set_state(rng["shuffle"])
    t.noise.set_state(rng["noise"])
    device = next(t.model.parameters()).device
    best_state = checkpoint["best_state"]
    if best_state is not None:
        best_state = {k: v.to(device) for k, v in best_state.items()}
    return _RunState(
        epoch=checkpoint["epoch"],
        step=checkpoint["step"],
        history=[EpochMetrics(**m) for m in checkpoint["history"]],
        best_epoch=checkpoint["best_epoch"],
        best_val_accuracy=checkpoint["best_val_accuracy"],
        best_state=best_state,
    )
