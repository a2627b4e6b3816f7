from __future__ import annotations

import pytest
import torch

from arnn.config import OptimSection, TrainConfig
from arnn.errors import UsageError
from arnn.train import CHECKPOINT_FILE, train


def _config(mnist_root, **overrides) -> TrainConfig:
    values = dict(
        task="mnist",
        model="antisymmetric",
        hidden=8,
        eps=0.1,
        lr=0.05,
        batch_size=64,
        epochs=3,
        val_size=40,
        subset=100,
        data_dir=str(mnist_root),
        download=False,
        device="cpu",
    )
    return TrainConfig.parse({**values, **overrides})


def _curve(result):
    return [(m.epoch, m.step, m.train_loss, m.val_loss, m.val_accuracy) for m in result.history]


def test_same_seed_same_result_on_cpu(mnist_root):
    first, second = train(_config(mnist_root)), train(_config(mnist_root))
    assert _curve(first) == _curve(second)
    assert first.test_accuracy == second.test_accuracy
    assert _curve(train(_config(mnist_root, seed=1))) != _curve(first)


def test_reports_every_epoch_and_scores_best_validation_weights(mnist_root, tmp_path):
    seen = []
    result = train(
        _config(mnist_root),
        report=lambda metrics, folder: seen.append(
            (metrics.epoch, (folder / CHECKPOINT_FILE).exists())
        ),
        checkpoint_dir=tmp_path,
    )
    assert seen == [(1, True), (2, True), (3, True)]
    assert result.status == "finished" and result.parameters == 8 * 7 // 2 + 16 + 90
    best = max(result.history, key=lambda m: m.val_accuracy)
    assert result.best_val_accuracy == best.val_accuracy and result.best_epoch == best.epoch
    assert 0.0 <= result.test_accuracy <= 1.0 and result.seconds_per_epoch > 0


class _Crash(Exception):
    pass


def test_an_interrupted_run_continues_from_its_checkpoint(mnist_root, tmp_path):
    whole = train(_config(mnist_root))

    def crash_after_second_epoch(metrics, folder):
        if metrics.epoch == 2:
            raise _Crash

    with pytest.raises(_Crash):
        train(_config(mnist_root), report=crash_after_second_epoch, checkpoint_dir=tmp_path)
    resumed_epochs = []
    resumed = train(
        _config(mnist_root),
        report=lambda metrics, folder: resumed_epochs.append(metrics.epoch),
        checkpoint_dir=tmp_path,
    )
    assert resumed_epochs == [3]
    assert _curve(resumed) == _curve(whole)
    assert resumed.test_accuracy == whole.test_accuracy


def test_a_checkpoint_of_other_settings_is_refused(mnist_root, tmp_path):
    train(_config(mnist_root, epochs=1), checkpoint_dir=tmp_path)
    with pytest.raises(UsageError, match=r"lr 0\.05 \(now 0\.2\)"):
        train(_config(mnist_root, epochs=1, lr=0.2), checkpoint_dir=tmp_path)


def test_iterations_count_optimiser_steps_across_epochs(mnist_root):
    result = train(_config(mnist_root, epochs=None, iterations=3))
    assert [(m.epoch, m.step) for m in result.history] == [(1, 2), (2, 3)]


def test_step_learning_rate_decay(mnist_root):
    result = train(_config(mnist_root, lr_decay_every=1, lr_decay=0.5, optimizer="adagrad"))
    assert [m.lr for m in result.history] == pytest.approx([0.05, 0.025, 0.0125])


def test_a_non_finite_loss_ends_the_run_as_diverged():
    config = TrainConfig.parse(
        dict(
            task="adding",
            task_options={"length": 8, "train_size": 512, "test_size": 64},
            hidden=8,
            lr=1e20,
            batch_size=32,
            epochs=3,
            val_size=64,
            device="cpu",
        )
    )
    result = train(config)
    assert result.status == "diverged"
    assert result.history == [] and result.test_accuracy is None


def test_weights_made_non_finite_by_an_epochs_last_step_end_it_as_diverged_unscored(tmp_path):
    """One step an epoch; that step's loss and gradient are finite, but an enormous
    learning rate sends the weights to infinity: the epoch is neither evaluated, nor
    checkpointed, nor reported."""
    config = TrainConfig.parse(
        dict(
            task="adding",
            task_options={"length": 8, "train_size": 96, "test_size": 64},
            hidden=8,
            lr=3e38,
            momentum=0.0,
            batch_size=32,
            epochs=3,
            val_size=64,
            device="cpu",
        )
    )
    reported = []
    result = train(config, report=lambda m, f: reported.append(m), checkpoint_dir=tmp_path)
    assert result.status == "diverged", result.history
    assert result.diverged_at == "non-finite parameters after epoch 1 (step 1)"
    assert reported == [] and result.history == [] and result.best_val_accuracy is None
    assert not (tmp_path / CHECKPOINT_FILE).exists()


def test_the_test_split_is_scored_only_when_asked(mnist_root):
    assert train(_config(mnist_root, epochs=1), score_test=False).test_accuracy is None
    assert train(_config(mnist_root, epochs=1)).test_accuracy is not None


@pytest.mark.parametrize("optimizer", ["sgd", "adagrad", "adam", "rmsprop"])
def test_training_lowers_the_loss(optimizer):
    lr = {"sgd": 0.1, "adagrad": 0.1, "adam": 0.01, "rmsprop": 0.003}[optimizer]
    config = TrainConfig.parse(
        dict(
            task="adding",
            task_options={"length": 8, "train_size": 1024, "test_size": 64},
            model="antisymmetric",
            hidden=16,
            eps=0.5,
            optimizer=optimizer,
            lr=lr,
            batch_size=32,
            epochs=4,
            val_size=64,
            clip=1.0,
            device="cpu",
        )
    )
    result = train(config)
    assert result.history[-1].train_loss < 0.5 * result.history[0].train_loss
    assert torch.isfinite(torch.tensor(result.test_loss))


def test_the_optimiser_table_is_what_the_configuration_allows():
    from typing import get_args

    from arnn.train import OPTIMIZERS

    assert set(OPTIMIZERS) == set(get_args(OptimSection.model_fields["name"].annotation))
