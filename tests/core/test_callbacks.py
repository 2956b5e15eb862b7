"""The callback system: event order, the cancel exceptions, callback_fns and the handler."""

from __future__ import annotations

import torch

from learnkit import Callback, CancelBatch, CancelEpoch, CancelFit, Learner, LearnerCallback
from learnkit.callback import CallbackHandler, Event, camel2snake
from tests.core.tiny import tiny_data, tiny_model

TRAIN_BATCH = ["batch_begin", "loss_begin", "backward_begin", "backward_end", "step_end", "batch_end"]
VALID_BATCH = ["batch_begin", "loss_begin", "batch_end"]


def test_event_order_of_a_fit():
    data = tiny_data(n=32, bs=16)  # 2 train batches, 1 valid batch (bs 32)
    learn = Learner(data, tiny_model())
    log = RecordAll()
    learn.fit(2, 1e-3, callbacks=[log])
    epoch = ["epoch_begin", *TRAIN_BATCH * 2, *VALID_BATCH, "epoch_end"]
    assert log.events == ["train_begin", *epoch * 2, "train_end"]


class RecordAll(Callback):
    def __init__(self):
        self.events = []

    def _log(self, name, state):
        self.events.append(name)

    on_train_begin = lambda self, s: self._log("train_begin", s)  # noqa: E731
    on_epoch_begin = lambda self, s: self._log("epoch_begin", s)  # noqa: E731
    on_batch_begin = lambda self, s: self._log("batch_begin", s)  # noqa: E731
    on_loss_begin = lambda self, s: self._log("loss_begin", s)  # noqa: E731
    on_backward_begin = lambda self, s: self._log("backward_begin", s)  # noqa: E731
    on_backward_end = lambda self, s: self._log("backward_end", s)  # noqa: E731
    on_step_end = lambda self, s: self._log("step_end", s)  # noqa: E731
    on_batch_end = lambda self, s: self._log("batch_end", s)  # noqa: E731
    on_epoch_end = lambda self, s: self._log("epoch_end", s)  # noqa: E731
    on_train_end = lambda self, s: self._log("train_end", s)  # noqa: E731
    on_cancel_batch = lambda self, s: self._log("cancel_batch", s)  # noqa: E731
    on_cancel_epoch = lambda self, s: self._log("cancel_epoch", s)  # noqa: E731
    on_cancel_train = lambda self, s: self._log("cancel_train", s)  # noqa: E731
    on_exception = lambda self, s: self._log("exception", s)  # noqa: E731


def _raise_cb(exc, at, event, counter="iteration"):
    """A callback raising ``exc`` at ``event`` when the train batch ``counter`` equals ``at``."""

    def maybe_raise(self, state):
        if state.train and getattr(state, counter) == at:
            raise exc()

    return type("R", (Callback,), {event: maybe_raise})()


def test_cancel_batch_skips_that_step_only():
    data = tiny_data(n=32, bs=16, shuffle=False)
    learn = Learner(data, tiny_model())
    log = RecordAll()
    before = [p.detach().clone() for p in learn.model.parameters()]
    learn.fit(1, 1e-2, callbacks=[log, _raise_cb(CancelBatch, 0, "on_backward_begin", "num_batch")])
    assert log.events.count("cancel_batch") == 1
    assert log.events.count("step_end") == 1  # batch 0 never stepped, batch 1 did
    assert learn.iteration == 1  # a cancelled batch does not count as trained
    assert any(not torch.equal(a, b) for a, b in zip(before, learn.model.parameters()))


def test_cancel_epoch_still_validates_and_continues():
    data = tiny_data(n=64, bs=16)  # 4 batches an epoch
    learn = Learner(data, tiny_model())
    log = RecordAll()
    learn.fit(2, 1e-3, callbacks=[log, _raise_cb(CancelEpoch, 2, "on_batch_end")])
    assert log.events.count("cancel_epoch") == 1
    assert learn.recorder.nb_batches == [2, 4]
    assert len(learn.recorder.val_losses) == 2
    assert log.events[-1] == "train_end"


def test_cancel_fit_ends_the_run_but_train_end_runs():
    learn = Learner(tiny_data(n=64, bs=16), tiny_model())
    log = RecordAll()
    learn.fit(3, 1e-3, callbacks=[log, _raise_cb(CancelFit, 5, "on_batch_begin")])
    assert log.events.count("epoch_begin") == 2
    assert log.events[-2:] == ["cancel_train", "train_end"]
    assert learn.iteration == 5


def test_exception_runs_cleanup_and_propagates():
    learn = Learner(tiny_data(), tiny_model())
    log = RecordAll()
    try:
        learn.fit(1, 1e-3, callbacks=[log, _raise_cb(ZeroDivisionError, 2, "on_batch_begin")])
    except ZeroDivisionError:
        pass
    else:  # pragma: no cover
        raise AssertionError("the exception was swallowed")
    assert log.events[-2:] == ["exception", "train_end"]


class Counter(LearnerCallback):
    def __init__(self, learn):
        super().__init__(learn)
        self.batches = 0

    def on_batch_end(self, state):
        if state.train:
            self.batches += 1


def test_callback_fns_are_made_once_and_exposed_by_snake_name():
    learn = Learner(tiny_data(n=32, bs=16), tiny_model(), callback_fns=[Counter])
    assert learn.counter.learn is learn
    first = learn.counter
    learn.fit(1, 1e-3)
    learn.fit(1, 1e-3)
    assert learn.counter is first and learn.counter.batches == 4
    assert learn.recorder is learn.fn_callbacks[0]


def test_order_sorts_and_handler_skips_absent_events():
    calls = []
    a = type("A", (Callback,), {"order": 5, "on_epoch_end": lambda self, s: calls.append("a")})()
    b = type("B", (Callback,), {"order": -5, "on_epoch_end": lambda self, s: calls.append("b")})()
    cbh = CallbackHandler([a, b])
    cbh(Event.epoch_end)
    assert calls == ["b", "a"]
    assert not cbh.listens(Event.batch_begin)


def test_camel2snake():
    assert camel2snake("CSVLogger") == "csv_logger"
    assert camel2snake("SaveModelCallback") == "save_model_callback"
    assert camel2snake("Recorder") == "recorder"


def test_record_on_cpu_keeps_the_last_batch():
    from learnkit import RecordOnCPU

    data = tiny_data(n=32, bs=16, shuffle=False)
    rec = RecordOnCPU()
    Learner(data, tiny_model()).fit(1, 1e-3, callbacks=[rec])
    x_valid, y_valid = data.valid_dl.dl.dataset.tensors
    assert torch.equal(rec.input, x_valid) and torch.equal(rec.target, y_valid)  # last batch seen: validation
