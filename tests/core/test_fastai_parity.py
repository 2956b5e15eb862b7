"""fastai v1's behaviour where its users rely on it (issue 11): each test pins fastai v1's values,
computed from its formulas written here or by hand."""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from learnkit import DataBunch
from learnkit.callback import Callback, LearnerCallback
from learnkit.callbacks.tracking import SaveModelCallback
from learnkit.errors import UsageError
from learnkit.learner import Learner
from learnkit.loop import fit, validate
from learnkit.metrics import accuracy
from learnkit.vision import cnn_learner

from .tiny import tiny_data, tiny_model


def image_data(n: int = 8, size: int = 32, c: int = 3, bs: int = 4) -> DataBunch:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, size, size, generator=g)
    y = torch.arange(n) % c
    dl = DataLoader(TensorDataset(x, y), batch_size=bs)
    return DataBunch(dl, dl, classes=[str(i) for i in range(c)], size=size, device="cpu")


def ids(module: nn.Module) -> set[int]:
    return {id(p) for p in module.parameters()}


def three_groups() -> Learner:
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    learn = Learner(tiny_data(), model)
    learn.split(lambda m: (m[2], m[4]))
    return learn


# --- 1. split(fn): the returned modules mark where each group starts ---
@pytest.fixture(scope="module")
def resnet_learn():
    return cnn_learner(image_data(), "resnet18", pretrained=False)


def test_split_fn_on_a_resnet18_gives_fastai_three_groups(resnet_learn):
    learn, m = resnet_learn, resnet_learn.model
    learn.split(lambda m: (m[0][6], m[1]))  # fastai v1's documented example
    assert len(learn.layer_groups) == 3
    body = list(m[0].children())  # conv1, bn1, relu, maxpool, layer1, layer2, layer3, layer4
    stem_to_layer2 = set().union(*(ids(c) for c in body[:6]))
    assert ids(learn.layer_groups[0]) == stem_to_layer2
    assert ids(learn.layer_groups[1]) == ids(body[6]) | ids(body[7])
    assert ids(learn.layer_groups[2]) == ids(m[1])
    sizes = [sum(1 for _ in g.parameters()) for g in learn.layer_groups]
    assert sum(sizes) == len(list(m.parameters()))  # every parameter, once
    learn.fit(0)  # the optimizer holds all of them
    held = [id(p) for g in learn.opt.param_groups for p in g["params"]]
    assert sorted(held) == sorted(id(p) for p in m.parameters())


def test_cnn_and_unet_learner_split_on_take_fastai_split_points():
    from learnkit.vision.learners import unet_learner

    learn = cnn_learner(image_data(), "resnet18", pretrained=False, split_on=lambda m: (m[0][6], m[1]))
    assert [len(ids(g)) for g in learn.layer_groups] == [
        len(set().union(*(ids(c) for c in list(learn.model[0].children())[:6]))),
        len(ids(learn.model[0][6]) | ids(learn.model[0][7])),
        len(ids(learn.model[1])),
    ]
    seg = DataBunch(
        DataLoader(TensorDataset(torch.randn(4, 3, 32, 32), torch.zeros(4, 32, 32, dtype=torch.long)), 2),
        None,
        classes=["a", "b"],
        task="segmentation",
        size=32,
        device="cpu",
    )
    unet = unet_learner(seg, "simple_cnn", cut=-1, split_on=lambda m: (m.bn,))
    assert len(unet.layer_groups) == 2
    assert ids(unet.layer_groups[0]) == ids(unet.model.encoder)
    assert sum(len(ids(g)) for g in unet.layer_groups) == len(ids(unet.model))


def test_split_that_misses_or_repeats_parameters_names_them():
    learn = Learner(tiny_data(), tiny_model())
    m = learn.model
    with pytest.raises(UsageError, match=r"left out \(0\.weight, 0\.bias"):
        learn.split([[m[3]]])  # groups given as lists: only the last linear
    with pytest.raises(UsageError, match=r"in two groups or more \(3\.weight"):
        learn.split([[m[3]], [m[0], m[1], m[3]]])
    learn.layer_groups = [m[3]]  # set by hand, bypassing split: freeze_to checks too
    with pytest.raises(UsageError, match="left out"):
        learn.freeze_to(0)


def test_split_groups_given_as_lists_are_the_groups():
    learn = Learner(tiny_data(), tiny_model())
    m = learn.model
    learn.split([[m[0], m[1]], [m[2], m[3]]])
    assert [ids(g) for g in learn.layer_groups] == [ids(m[0]) | ids(m[1]), ids(m[3])]


# --- 2. one thing or a list ---
class Counter(LearnerCallback):
    def __init__(self, learn):
        super().__init__(learn)
        self.epochs = 0

    def on_epoch_end(self, state):
        self.epochs += 1


class Seen(Callback):
    def __init__(self):
        self.batches = 0

    def on_batch_end(self, state):
        self.batches += state.train


def test_single_metric_callback_fn_and_callback_are_listified():
    learn = Learner(tiny_data(n=32, bs=8), tiny_model(), metrics=accuracy, callback_fns=Counter)
    assert learn.metrics == [accuracy]
    cb = Seen()
    learn.fit(1, 1e-3, callbacks=cb)
    assert cb.batches == 4 and learn.counter.epochs == 1
    assert learn.recorder.metrics_names == ["accuracy"]
    assert len(learn.validate(metrics=accuracy)) == 2


def test_one_element_lr_list_is_broadcast():
    learn = three_groups()
    learn.fit(1, [2e-3])
    assert learn.opt.lrs == [2e-3] * 3
    with pytest.raises(UsageError, match="2 values for 3"):
        learn.fit(1, [1e-3, 2e-3])


# --- 3. fit's default lr is slice(3e-3) ---
def test_fit_default_lr_is_fastai_slice_3e_3():
    learn = three_groups()
    learn.fit(1)
    expected = [3e-3 / 10, 3e-3 / 10, 3e-3]  # lr_range(slice(3e-3)): stop/10 for the body groups
    assert learn.opt.lrs == pytest.approx(expected)
    assert learn.recorder.group_lrs[0] == pytest.approx(expected)


# --- 4. SaveModelCallback ---
class ScriptedMetric(Callback):
    """A metric whose value is scripted per epoch: 3, 1, 2 (best at epoch 0 with mode max)."""

    order = -100

    def __init__(self, values):
        self.values, self.epoch = values, 0

    def on_epoch_end(self, state):
        state.last_metrics.append(self.values[self.epoch])
        self.epoch += 1


class KeepWeights(Callback):
    order = 100

    def __init__(self):
        self.weights = []

    def on_epoch_end(self, state):
        self.weights.append({k: v.clone() for k, v in state.model.state_dict().items()})


def same(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


def test_save_model_loads_the_best_weights_back_at_the_end(tmp_path):
    metric = ScriptedMetric([3.0, 1.0, 2.0])
    metric.__name__ = "score"
    learn = Learner(tiny_data(n=32, bs=8), tiny_model(), metrics=[metric], path=tmp_path)
    keep = KeepWeights()
    save = SaveModelCallback(learn, monitor="score", mode="max", name="bestmodel")
    learn.fit(3, 1e-2, callbacks=[save, keep])
    assert (tmp_path / "models" / "bestmodel.safetensors").is_file()
    assert same(learn.model.state_dict(), keep.weights[0])  # epoch 0's, not the last
    assert not same(keep.weights[0], keep.weights[2])
    assert learn.epoch == 3  # weights only: the run's position is where the fit ended


def test_save_model_load_best_false_keeps_the_last_weights(tmp_path):
    metric = ScriptedMetric([3.0, 1.0])
    metric.__name__ = "score"
    learn = Learner(tiny_data(n=32, bs=8), tiny_model(), metrics=[metric], path=tmp_path)
    keep = KeepWeights()
    save = SaveModelCallback(learn, monitor="score", mode="max", name="best", load_best=False)
    learn.fit(2, 1e-2, callbacks=[save, keep])
    assert same(learn.model.state_dict(), keep.weights[1])


def test_save_model_every_epoch_keeps_one_file_per_epoch(tmp_path):
    learn = Learner(tiny_data(n=32, bs=8), tiny_model(), path=tmp_path)
    learn.fit(3, 1e-3, callbacks=[SaveModelCallback(learn, every="epoch", name="model")])
    files = sorted(p.name for p in (tmp_path / "models").glob("model*.safetensors") if ".opt." not in p.name)
    assert files == ["model_0.safetensors", "model_1.safetensors", "model_2.safetensors"]
    rolling = SaveModelCallback(learn, every="epoch", name="last", rolling=True)
    learn.fit(2, 1e-3, callbacks=[rolling])
    assert (tmp_path / "models" / "last.safetensors").is_file()
    assert not list((tmp_path / "models").glob("last_*"))


def test_the_command_line_keeps_last_and_the_last_epochs_weights(tmp_path):
    from learnkit.jobs.fitting import tracking_callbacks

    learn = Learner(tiny_data(), tiny_model(), path=tmp_path)
    saves = [
        cb for cb in tracking_callbacks(learn, monitor="valid_loss") if isinstance(cb, SaveModelCallback)
    ]
    last, best = saves
    assert (last.every, last.rolling, last.file_name(4)) == ("epoch", True, "last")
    assert (best.every, best.load_best) == ("improvement", False)


# --- 5. model_summary runs one batch of the data ---
def test_model_summary_runs_a_batch_of_any_shape():
    x, y = torch.randn(12, 5), torch.randint(0, 3, (12,))
    dl = DataLoader(TensorDataset(x, y), batch_size=4)
    model = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3))
    learn = Learner(DataBunch(dl, dl, classes=["a", "b", "c"]), model)
    text = learn.model_summary()
    rows = [line.split() for line in text.splitlines() if line.startswith(("Linear", "ReLU"))]
    assert [(r[0], r[1], r[2]) for r in rows] == [
        ("Linear", "7", "42"),
        ("ReLU", "7", "0"),
        ("Linear", "3", "24"),
    ]


# --- 7. the missing fastai v1 API ---
def test_save_return_path_and_load_device(tmp_path):
    learn = Learner(tiny_data(), tiny_model(), path=tmp_path)
    path = learn.save("stage-1", return_path=True)
    assert path == tmp_path / "models" / "stage-1.safetensors" and path.is_file()
    before = {k: v.clone() for k, v in learn.model.state_dict().items()}
    learn.fit(1, 1e-2)
    learn.load("stage-1", device="cpu", with_opt=False)
    assert same(learn.model.state_dict(), before)
    assert next(learn.model.parameters()).device.type == "cpu"


def test_module_validate_average_false_gives_one_mean_loss_per_batch():
    model = tiny_model()
    x, y = torch.randn(10, 4), torch.randint(0, 2, (10,))
    dl = DataLoader(TensorDataset(x, y), batch_size=4)  # batches of 4, 4, 2
    losses = validate(model, dl, F.cross_entropy, average=False)
    model.eval()
    with torch.no_grad():
        expected = [float(F.cross_entropy(model(x[i : i + 4]), y[i : i + 4])) for i in (0, 4, 8)]
    assert [float(v) for v in losses] == pytest.approx(expected, rel=1e-5)
    assert validate(model, dl, F.cross_entropy) == pytest.approx(
        (4 * expected[0] + 4 * expected[1] + 2 * expected[2]) / 10, rel=1e-5
    )


@dataclass
class BasicLearner:
    model: nn.Module
    loss_func: object
    opt: torch.optim.Optimizer
    data: object


def test_module_fit_works_with_fastai_basic_learner_fields():
    data = tiny_data(n=64, bs=16)
    model = tiny_model()
    learn = BasicLearner(model, F.cross_entropy, torch.optim.SGD(model.parameters(), lr=0.1), data)
    before = validate(model, data.valid_dl, F.cross_entropy)
    seen = Seen()
    fit(3, learn, callbacks=seen, metrics=accuracy)
    assert seen.batches == 3 * 4
    assert validate(model, data.valid_dl, F.cross_entropy) < before


class ExtraMetrics(LearnerCallback):
    """Adds two metrics the fastai v1 way: one before the Recorder records the epoch, one after."""

    def __init__(self, learn, order):
        super().__init__(learn)
        self.order = order

    def on_train_begin(self, state):
        self.learn.recorder.add_metric_names(["early" if self.order < -10 else "late"])

    def on_epoch_end(self, state):
        self.learn.recorder.add_metrics(0.25 if self.order < -10 else 0.75)


def test_recorder_add_metric_names_and_add_metrics():
    learn = Learner(tiny_data(n=32, bs=8), tiny_model(), metrics=accuracy)
    learn.fit(2, 1e-3, callbacks=[ExtraMetrics(learn, -20), ExtraMetrics(learn, 20)])
    rec = learn.recorder
    assert rec.metrics_names == ["accuracy", "early", "late"]
    assert [(row["early"], row["late"]) for row in rec.history] == [(0.25, 0.75)] * 2
    assert [m[1:] for m in rec.metrics] == [[0.25, 0.75]] * 2


def test_recorder_format_stats_is_fastai_text():
    learn = Learner(tiny_data(), tiny_model())
    out = learn.recorder.format_stats([3, 0.5, None, torch.tensor(0.25)])
    assert out[:4] == ["3", "0.500000", "#na#", "0.250000"]
    assert out[4] == "00:00"  # the epoch's time, mm:ss


def test_plot_skip_start_and_skip_end(tmp_path):
    learn = Learner(tiny_data(n=32, bs=8), tiny_model(), path=tmp_path)
    learn.fit(3, 1e-3)  # 4 batches an epoch: validation after batches 4, 8, 12
    its, losses, ends, vals = learn.recorder.loss_points(skip_start=5, skip_end=3)
    assert its == list(range(5, 9)) and losses == learn.recorder.losses[5:9]
    # fastai's _split_list_val: keep epochs ending at e with e - 5 >= 0 and 12 - e >= 3: only e = 8
    assert vals == [learn.recorder.val_losses[1]] and ends == [7]
    assert learn.recorder.plot_losses(skip_start=5, skip_end=3).is_file()
    assert learn.recorder.plot_lr(show_moms=True, skip_start=2, skip_end=2).is_file()


def test_interpret_with_tta_uses_the_tta_predictions():
    learn = Learner(image_data(), nn.Sequential(nn.Conv2d(3, 3, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten()))
    interp = learn.interpret(tta=True)
    preds, targets, losses = learn.TTA(with_loss=True)
    assert torch.allclose(interp.preds, preds) and torch.allclose(interp.losses, losses)
    plain = learn.interpret()
    assert not torch.allclose(plain.preds, interp.preds)


# --- 8. edge cases ---
def test_one_cycle_warm_up_of_zero_batches_still_runs_one():
    learn = Learner(tiny_data(n=32, bs=8, shuffle=False), tiny_model())  # 4 batches
    learn.fit_one_cycle(1, 0.01, pct_start=0.1)  # int(4 * 0.1) == 0
    lr_max, low, final = 0.01, 0.01 / 25, 0.01 / (25 * 1e4)

    def cos(start, end, pct):
        return end + (start - end) / 2 * (1 + math.cos(math.pi * pct))

    # fastai: Scheduler(n_iter=max(1, 0)) for the warm-up, then the 4-iteration annealing phase
    expected = [low, lr_max, cos(lr_max, final, 1 / 4), cos(lr_max, final, 2 / 4)]
    assert learn.recorder.lrs == pytest.approx(expected)
    assert learn.recorder.moms[:2] == pytest.approx([0.95, 0.85])


def test_freeze_on_one_group_is_an_error():
    learn = Learner(tiny_data(), tiny_model())
    with pytest.raises(UsageError, match="two layer groups"):
        learn.freeze()


def test_freeze_to_uses_python_slicing():
    learn = three_groups()
    learn.freeze_to(-5)  # layer_groups[:-5] is empty: nothing frozen
    assert all(p.requires_grad for p in learn.model.parameters())
    learn.freeze_to(-1)
    assert [all(p.requires_grad for p in g.parameters()) for g in learn.layer_groups] == [False, False, True]
    learn.freeze_to(5)  # all of them
    assert not any(p.requires_grad for p in learn.model.parameters())


def test_init_skips_frozen_layers():
    learn = three_groups()
    learn.freeze()
    body = [p.clone() for g in learn.layer_groups[:2] for p in g.parameters()]
    learn.init(nn.init.ones_)
    assert all(
        torch.equal(a, b) for a, b in zip(body, (p for g in learn.layer_groups[:2] for p in g.parameters()))
    )
    head = learn.model[4]
    assert torch.equal(head.weight, torch.ones_like(head.weight)) and torch.equal(head.bias, torch.zeros(2))


def test_basic_learner_namespace_data_works_too():
    x, y = torch.randn(8, 4), torch.randint(0, 2, (8,))
    dl = DataLoader(TensorDataset(x, y), batch_size=4)
    model = tiny_model()
    learn = SimpleNamespace(
        model=model,
        loss_func=F.cross_entropy,
        opt=torch.optim.SGD(model.parameters(), 0.1),
        data=SimpleNamespace(train_dl=dl, valid_dl=None),
    )
    fit(1, learn)
