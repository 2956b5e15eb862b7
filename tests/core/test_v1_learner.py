"""fastai v1's learner API (issue 22, points 2, 4, 5, 6 and 9), against fastai1's vision/learner.py,
basic_train.py and train.py: archs as torchvision functions, pretrained=True from torch's hub
cache with the body frozen, export / load_learner(path), summary, load's keywords, lr_find's curve
in the recorder and plot(suggestion=True)'s min_grad_lr, plot keywords and Figures without a
backend switch, ClassificationInterpretation's v1 forms, and the star import."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from torch import nn

from learnkit import (
    ClassificationInterpretation,
    ImageDataBunch,
    accuracy,
    cnn_learner,
    load_learner,
    models,
    unet_learner,
)
from learnkit.errors import CheckpointError, DataError
from tests.core.tiny_images import make_class_folder


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = make_class_folder(tmp_path_factory.mktemp("d"))
    return ImageDataBunch.from_folder(root, size=16, bs=4, device="cpu")


def _frozen(learn) -> int:
    return sum(not p.requires_grad for p in learn.model.parameters())


def test_models_namespace_is_torchvisions():
    import torchvision

    assert models.resnet18 is torchvision.models.resnet18 and models.resnet34 is torchvision.models.resnet34


def test_pretrained_true_reads_the_hub_cache_and_freezes_the_body(data, tmp_path, monkeypatch):
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    with pytest.raises(DataError) as err:  # never downloaded: the message names the file and folder
        cnn_learner(data, models.resnet18, path=tmp_path)
    assert "resnet18-f37072fd.pth" in str(err.value) and str(tmp_path / "th" / "hub" / "checkpoints") in str(
        err.value
    )
    folder = tmp_path / "th" / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    torch.manual_seed(3)
    weights = torchvision.models.resnet18().state_dict()
    torch.save(weights, folder / "resnet18-f37072fd.pth")
    learn = cnn_learner(data, models.resnet18, path=tmp_path)  # v1's default: pretrained=True
    assert torch.equal(learn.model[0][0].weight, weights["conv1.weight"])
    body = list(learn.model[0].parameters())
    assert _frozen(learn) > 0 and not any(
        p.requires_grad for p in body if p.dim() > 1
    )  # v1: bn stays trainable
    assert all(p.requires_grad for p in learn.model[1].parameters())
    scratch = cnn_learner(data, models.resnet18, pretrained=False, path=tmp_path)
    assert _frozen(scratch) == 0 and not torch.equal(scratch.model[0][0].weight, weights["conv1.weight"])
    assert _frozen(unet_learner(data, models.resnet18, pretrained=False, path=tmp_path)) == 0


def test_an_nn_module_factory_is_cut_at_its_last_pool(data, tmp_path):
    def tiny(pretrained=False):  # v1's protocol: arch(pretrained)
        return nn.Sequential(
            nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10)
        )

    learn = cnn_learner(data, tiny, pretrained=False, path=tmp_path)
    assert len(learn.model[0]) == 2 and learn.model(torch.zeros(2, 3, 16, 16)).shape == (2, 3)
    learn.export()
    with pytest.raises(CheckpointError, match="pass it: load_learner"):
        load_learner(tmp_path)
    again = load_learner(tmp_path, model=cnn_learner(data, tiny, pretrained=False).model)
    x = torch.randn(2, 3, 16, 16)
    learn.model.eval()
    assert torch.allclose(again.model(x), learn.model(x))


def test_export_then_load_learner_predicts_the_same(data, tmp_path):
    from learnkit import open_image

    torch.manual_seed(0)
    learn = cnn_learner(data, "simple_cnn", path=tmp_path)
    learn.fit(1, 1e-2)
    out = learn.export("export.pkl")  # never a pickle: the same name, .safetensors
    assert out == tmp_path / "export.safetensors" and not (tmp_path / "export.pkl").exists()
    assert out.read_bytes()[8:9] == b"{"  # a safetensors header, not a pickle
    learn2 = load_learner(tmp_path)
    assert load_learner(tmp_path, file="export.pkl").data.classes == data.classes
    item = data.valid_ds.paths[0]
    cat, idx, probs = learn2.predict(open_image(item))
    cat1, idx1, probs1 = learn.predict(item)
    assert (str(cat), int(idx)) == (cat1, idx1) and torch.allclose(probs, probs1, atol=1e-6)
    assert data.classes[int(idx)] == str(cat) and float(probs.sum()) == pytest.approx(1.0)


def test_summary_and_load_keywords(data, tmp_path):
    learn = cnn_learner(data, "simple_cnn", path=tmp_path)
    text = learn.summary()
    assert isinstance(text, str) and repr(text) == str(text) and "Total params" in text
    learn.save("s1")
    with torch.no_grad():
        next(learn.model.parameters()).zero_()
    assert learn.load("s1", purge=False, strict=True, with_opt=False) is learn
    assert next(learn.model.parameters()).abs().sum() > 0


def test_lr_find_curve_is_the_recorders_and_plot_suggestion_is_v1s(data, tmp_path, capsys):
    import matplotlib

    backend = matplotlib.get_backend()
    torch.manual_seed(0)
    learn = cnn_learner(data, "simple_cnn", path=tmp_path, metrics=[accuracy])
    learn.fit(1, 1e-3)
    run_lrs = list(learn.recorder.lrs)
    learn.lr_find(num_it=30, stop_div=False)
    rec = learn.recorder
    assert rec.lrs == rec.lr_find_lrs and len(rec.lrs) == 30 and rec.losses == rec.lr_find_losses
    fig = rec.plot(suggestion=True, return_fig=True)
    assert isinstance(fig, Figure)
    # v1 (basic_train.py Recorder.plot): np.gradient of the losses trimmed [10:-5], its argmin
    lrs, losses = rec.lrs[10:-5], rec.losses[10:-5]
    mg = int(np.gradient(np.array(losses)).argmin())
    assert rec.min_grad_lr == lrs[mg]
    out = capsys.readouterr().out
    assert f"Min numerical gradient: {lrs[mg]:.2E}" in out
    assert f"Min loss divided by 10: {lrs[int(np.argmin(losses))] / 10:.2E}" in out
    learn.fit(1, 1e-3)  # the next fit continues the run's own record
    assert rec.lrs[: len(run_lrs)] == run_lrs
    for call in (rec.plot_losses, rec.plot_lr, rec.plot_metrics):
        assert isinstance(call(return_fig=True, figsize=(3, 2)), Figure)
    assert tuple(rec.plot_lr(show_moms=True, return_fig=True, figsize=(5, 2)).get_size_inches()) == (5, 2)
    assert matplotlib.get_backend() == backend  # no plot switches the process's backend


def test_interpretation_v1_forms(data, tmp_path):
    torch.manual_seed(0)
    learn = cnn_learner(data, "simple_cnn", path=tmp_path)
    preds, y, losses = learn.get_preds(with_loss=True)
    interp = ClassificationInterpretation(learn, preds, y, losses)  # v1's order
    same = ClassificationInterpretation.from_learner(learn)
    cm = interp.confusion_matrix()
    assert isinstance(cm, np.ndarray) and cm.sum() == len(y) and np.array_equal(cm, same.confusion_matrix())
    top = interp.top_losses(4)
    values, idx = top
    assert torch.equal(top.indices, idx) and torch.equal(top.values, values)
    assert values.tolist() == sorted(losses.tolist(), reverse=True)[:4]
    assert interp.most_confused(min_val=1) == sorted(
        [
            (interp.classes[i], interp.classes[j], int(cm[i, j]))
            for i in range(3)
            for j in range(3)
            if i != j and cm[i, j] >= 1
        ],
        key=lambda c: -c[2],
    )
    fig = interp.plot_top_losses(4, largest=True, figsize=(7, 7), heatmap=True, return_fig=True)
    assert isinstance(fig, Figure) and tuple(fig.get_size_inches()) == (7, 7)
    cmf = interp.plot_confusion_matrix(figsize=(4, 4), dpi=60, return_fig=True)
    assert tuple(cmf.get_size_inches()) == (4, 4) and cmf.dpi == 60
    assert interp.plot_confusion_matrix(figsize=(4, 4), dpi=60).is_file()  # a PNG without return_fig


def test_star_import_gives_a_v1_notebooks_names_and_import_stays_lazy():
    code = (
        "import sys, learnkit\n"
        "assert 'torch' not in sys.modules, 'import learnkit imported torch'\n"
        "from learnkit import *\n"
        "names = ['torch', 'nn', 'F', 'np', 'partial', 'Path', 'plt', 'models', 'ImageDataBunch',"
        " 'get_transforms', 'imagenet_stats', 'cnn_learner', 'unet_learner', 'error_rate', 'accuracy',"
        " 'load_learner', 'open_image', 'open_mask', 'ClassificationInterpretation', 'DataBunch',"
        " 'Learner']\n"
        "missing = [n for n in names if n not in globals()]\n"
        "assert not missing, missing\n"
        "from learnkit.vision import *\n"
        "assert models.resnet34.__module__.startswith('torchvision')\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
