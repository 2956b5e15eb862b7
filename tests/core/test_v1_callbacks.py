"""fastai v1's callback protocol and callbacks, against v1's callback.py / basic_train.py /
callbacks/tracker.py / callbacks/hooks.py / callbacks/general_sched.py / train.py (fastai/fastai1).

v1's CallbackHandler passes its state dict as keyword arguments and applies a returned dict; its
fit loop breaks the epoch on ``stop_epoch`` after ``on_batch_end`` and the fit on
``stop_training`` after ``on_epoch_end``; ``epoch``/``iteration`` start at 0 each fit.
"""

from __future__ import annotations

import math

import matplotlib
import pytest
import torch
from torch import nn

from learnkit import (
    ActivationStats,
    BnFreeze,
    Callback,
    EarlyStoppingCallback,
    GeneralScheduler,
    Learner,
    ReduceLROnPlateauCallback,
    SaveModelCallback,
    ShowGraph,
    TerminateOnNaNCallback,
    TrainingPhase,
    add_metrics,
    hook_output,
    hook_outputs,
)
from learnkit.errors import UsageError
from learnkit.metrics import error_rate
from tests.core.tiny import tiny_data, tiny_model

# tiny_data(): 64 items, bs 16 -> 4 training batches an epoch; 32 validation items, one batch


def _learn(tmp_path=None, **kw):
    return Learner(tiny_data(), tiny_model(), path=tmp_path or ".", quiet=True, **kw)


class V1Log(Callback):
    """A v1 callback: state names as keyword arguments."""

    def __init__(self):
        self.batches, self.epochs, self.begin = [], [], None

    def on_train_begin(self, n_epochs, metrics_names, **kwargs):
        self.begin = (n_epochs, list(metrics_names), kwargs["epoch"], kwargs["iteration"])

    def on_batch_end(self, train, epoch, iteration, num_batch, last_loss, smooth_loss, **kwargs):
        if train:
            self.batches.append((epoch, iteration, num_batch, float(last_loss), smooth_loss))

    def on_epoch_end(self, epoch, last_metrics, **kwargs):
        self.epochs.append((epoch, list(last_metrics)))


def test_v1_hooks_get_the_state_as_keyword_arguments():
    learn = _learn(metrics=error_rate)
    log = V1Log()
    learn.fit(2, 1e-2, callbacks=[log])
    assert log.begin == (2, ["error_rate"], 0, 0)
    # v1: iteration counts the batches before this one; num_batch restarts each epoch
    assert [b[:3] for b in log.batches] == [(e, e * 4 + i, i) for e in range(2) for i in range(4)]
    # smooth_loss: v1's debiased moving average (beta 0.98) of the training losses
    avg, n = 0.0, 0
    for _, _, _, loss, smooth in log.batches:
        n += 1
        avg = 0.98 * avg + 0.02 * loss
        assert smooth == pytest.approx(avg / (1 - 0.98**n), rel=1e-5)
    rec = learn.recorder
    assert log.epochs == [(e, [rec.val_losses[e], rec.metrics[e][0]]) for e in range(2)]


def test_a_second_fit_counts_epochs_and_iterations_from_zero():
    learn = _learn()
    learn.fit(2, 1e-2)
    log = V1Log()
    learn.fit(1, 1e-2, callbacks=[log])
    assert [b[:3] for b in log.batches] == [(0, i, i) for i in range(4)]
    assert [r["epoch"] for r in learn.recorder.history] == [0, 1, 0]
    assert (learn.epoch, learn.iteration) == (3, 12)  # the run's position counts on
    learn.restart_epochs = False  # the command line's runs: one numbering for the run
    learn.fit(1, 1e-2)
    assert learn.recorder.history[-1]["epoch"] == 3


class StopAt(Callback):
    def __init__(self, key, when):
        self.key, self.when = key, when

    def on_batch_end(self, epoch, num_batch, train, **kwargs):
        if train and (epoch, num_batch) == self.when:
            return {self.key: True}


def test_returned_stop_epoch_and_stop_training():
    learn = _learn()
    learn.fit(3, 1e-2, callbacks=[StopAt("stop_epoch", (0, 1))])
    assert learn.recorder.nb_batches == [2, 4, 4]  # epoch 0 ended after its batch 1; validation ran
    assert learn.recorder.history[0]["valid_loss"] is not None

    class StopTraining(Callback):
        def on_epoch_end(self, epoch, **kwargs):
            return {"stop_training": epoch == 1}

    learn = _learn()
    learn.fit(5, 1e-2, callbacks=[StopTraining()])
    assert len(learn.recorder.history) == 2


def test_returned_values_replace_the_output_and_loss():
    class ZeroOutput(Callback):
        def on_loss_begin(self, last_output, **kwargs):
            return {"last_output": last_output * 0}

    class Seen(Callback):
        losses = []

        def on_batch_end(self, last_loss, train, **kwargs):
            if train:
                self.losses.append(float(last_loss))

    learn = _learn()
    learn.fit(1, 1e-2, callbacks=[ZeroOutput(), Seen()])
    assert Seen.losses == pytest.approx([math.log(2)] * 4)  # cross-entropy of equal logits, 2 classes


def test_an_unknown_returned_key_is_v1s_error():
    class Bad(Callback):
        def on_epoch_begin(self, **kwargs):
            return {"no_such_key": 1}

    with pytest.raises(UsageError, match="no_such_key isn't a valid key in the state of the callbacks"):
        _learn().fit(1, 1e-2, callbacks=[Bad()])


def test_skip_validate_returned_at_train_begin_holds_for_the_fit():
    class NoValid(Callback):
        def on_train_begin(self, **kwargs):
            return {"skip_validate": True}

    learn = _learn()
    learn.fit(2, 1e-2, callbacks=[NoValid()])
    assert [r["valid_loss"] for r in learn.recorder.history] == [None, None]


def test_typed_and_v1_hooks_run_side_by_side_in_order():
    calls = []

    class Typed(Callback):
        order = 5

        def on_epoch_end(self, state):
            calls.append(("typed", state.fit_epoch))

    class V1(Callback):
        _order = -5  # v1's attribute

        def on_epoch_end(self, epoch, **kwargs):
            calls.append(("v1", epoch))

    _learn().fit(1, 1e-2, callbacks=[Typed(), V1()])
    assert calls == [("v1", 0), ("typed", 0)]


class MeanTarget(Callback):
    """A v1 metric callback (v1's docs' pattern: add_metrics in on_epoch_end)."""

    def on_epoch_begin(self, **kwargs):
        self.total, self.count, self.train_batches = 0.0, 0, 0

    def on_batch_end(self, last_target, train, **kwargs):
        self.train_batches += train
        self.total += float(last_target.float().sum())
        self.count += len(last_target)

    def on_epoch_end(self, last_metrics, **kwargs):
        return {"last_metrics": add_metrics(last_metrics, self.total / self.count)}


def test_a_v1_metric_callback_sees_validation_only_and_adds_its_column():
    data = tiny_data()
    learn = Learner(data, tiny_model(), metrics=[MeanTarget()], quiet=True)
    learn.fit(1, 1e-2)
    y = torch.cat([y for _, y in data.valid_dl]).float()
    assert learn.recorder.metrics_names == ["mean_target"]  # v1: camel2snake of the class
    assert learn.recorder.history[0]["mean_target"] == pytest.approx(float(y.mean()))
    assert learn.metrics[0].train_batches == 0


# --- trackers (v1's tracker.py) ---
def test_trackers_reset_each_fit_and_print_v1s_lines(tmp_path, capsys):
    learn = Learner(tiny_data(), tiny_model(), path=tmp_path)
    save = SaveModelCallback(learn, name="best")
    learn.fit(1, 1e-2, callbacks=[save])
    first = save.best
    out = capsys.readouterr().out
    assert f"Better model found at epoch 0 with valid_loss value: {first}." in out
    # a second fit that does worse still saves its own best (v1 resets `best` at on_train_begin)
    learn.fit(1, 10.0, callbacks=[save])
    assert "Better model found at epoch 0 with valid_loss value:" in capsys.readouterr().out
    assert save.best == learn.recorder.history[-1]["valid_loss"]

    stop = EarlyStoppingCallback(learn, monitor="valid_loss", mode="max", min_delta=1e9)
    learn.fit(4, 1e-2, callbacks=[stop])
    assert "Epoch 1: early stopping" in capsys.readouterr().out and len(learn.recorder.history) == 4
    learn.fit(4, 1e-2, callbacks=[stop])  # wait and best start again: two epochs, not one
    assert len(learn.recorder.history) == 6


def test_quiet_learners_print_no_tracker_lines(tmp_path, capsys):
    learn = _learn(tmp_path)
    learn.fit(1, 1e-2, callbacks=[SaveModelCallback(learn)])
    assert capsys.readouterr().out == ""


def test_reduce_lr_on_plateau(capsys):
    learn = Learner(tiny_data(), tiny_model())
    cb = ReduceLROnPlateauCallback(learn, mode="max", min_delta=1e9, patience=0, factor=0.5, min_lr=0)
    learn.fit(3, 1e-2, callbacks=[cb])
    # epoch 0 improves on -inf; epochs 1 and 2 do not: the lr halves twice
    assert learn.opt.lr == pytest.approx(2.5e-3)
    out = capsys.readouterr().out
    assert "Epoch 1: reducing lr to 0.005" in out and "Epoch 2: reducing lr to 0.0025" in out


def test_terminate_on_nan_callback_v1(capsys):
    calls = []

    def loss(out, y):
        calls.append(1)
        value = nn.functional.cross_entropy(out, y)
        return value * float("nan") if len(calls) == 3 else value

    learn = Learner(tiny_data(), tiny_model(), loss_func=loss)
    cb = TerminateOnNaNCallback()
    learn.fit(3, 1e-2, callbacks=[cb])
    assert "Epoch/Batch (0/2): Invalid loss, terminating training." in capsys.readouterr().out
    assert cb.stop and learn.recorder.nb_batches == [3]
    assert learn.recorder.history[0]["valid_loss"] is None  # v1 skips the validation


# --- hooks (v1's callbacks/hooks.py) ---
def test_hook_output_and_hook_outputs():
    model = tiny_model()
    x = torch.randn(5, 4)
    with hook_output(model[0]) as hook, hook_outputs([model[0], model[3]]) as hooks:
        out = model(x)
    assert torch.equal(hook.stored, model[0](x).detach()) and torch.equal(hooks.stored[1], out.detach())
    assert hook.removed and not model[0]._forward_hooks


def test_activation_stats_shape_and_values():
    learn = _learn()
    stats = ActivationStats(learn, modules=[learn.model[0], learn.model[3]])
    learn.fit(1, 1e-2, callbacks=[stats])
    assert stats.stats.shape == (2, 2, 4)  # (mean, std) x modules x training batches
    x, _ = next(iter(learn.data.valid_dl))
    assert not learn.model[0]._forward_hooks  # removed at the end of the fit
    with hook_output(learn.model[0]) as hook:
        learn.model.eval()(x)
    assert torch.isfinite(stats.stats).all() and hook.stored.std() > 0


def test_bn_freeze_keeps_frozen_running_stats():
    learn = _learn(train_bn=False)
    bn = learn.model[1]
    for p in bn.parameters():
        p.requires_grad_(False)
    before = bn.running_mean.clone()
    learn.fit(1, 1e-2, callbacks=[BnFreeze(learn)])
    assert torch.equal(bn.running_mean, before)
    learn.fit(1, 1e-2)
    assert not torch.equal(bn.running_mean, before)


def test_general_scheduler_follows_v1s_scheduler():
    learn = _learn()
    phases = [TrainingPhase(2).schedule_hp("lr", (1e-3, 1e-2)), TrainingPhase(2).schedule_hp("lr", 1e-4)]
    learn.fit(5, 1e-2, callbacks=[GeneralScheduler(learn, phases)])
    # v1: the first phase's start at on_train_begin, then one step after each batch; linear for a
    # pair, constant for one value; when the phases are done the fit stops after that batch
    assert learn.recorder.lrs == pytest.approx([1e-3, 5.5e-3, 1e-2, 1e-4, 1e-4])
    assert len(learn.recorder.history) == 2


def test_show_graph_writes_a_png_and_leaves_the_backend(tmp_path):
    backend = matplotlib.get_backend()
    learn = _learn(tmp_path)
    graph = ShowGraph(learn)
    learn.fit(2, 1e-2, callbacks=[graph])
    assert graph.path == tmp_path / "plots" / "show_graph.png"
    assert graph.path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert matplotlib.get_backend() == backend


def test_to_fp16_on_a_cpu_warns_once():
    from learnkit import learner as learner_module

    learner_module._FP16_WARNED.clear()
    with pytest.warns(UserWarning, match="to_fp16\\(\\) on a CPU"):
        _learn().to_fp16()
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _learn().to_fp16()  # once a process


def test_skip_step_returned_at_batch_begin_skips_the_step():
    class NoStep(Callback):
        def on_batch_begin(self, train, **kwargs):
            return {"skip_step": train}  # v1 clears the skip flags at on_batch_begin, before callbacks

    learn = _learn()
    before = [p.detach().clone() for p in learn.model.parameters()]
    learn.fit(1, 1e-2, callbacks=[NoStep()])
    assert all(torch.equal(a, b) for a, b in zip(before, learn.model.parameters()))
