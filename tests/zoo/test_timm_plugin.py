"""The timm plugin: ``timm/<name>`` archs, lazily listed, with cuts, splits and HF-cache weights.

Built with timm's tiny test models (``test_resnet``, ``test_vit``, ...), never with weights.
"""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from learnkit import registry
from learnkit.errors import DataError
from learnkit.vision.models import build_model, model_spec_for
from learnkit.vision.unet_learner import build_unet
from tests.cli.conftest import run_learnkit

timm = pytest.importorskip("timm")
TEST_MODELS = [
    n for n in ("test_resnet", "test_vit", "test_convnext", "test_efficientnet") if timm.is_model(n)
]


def test_listing_builds_nothing_and_names_every_timm_model(monkeypatch):
    def no_build(*args, **kwargs):
        raise AssertionError("listing built a model")

    monkeypatch.setattr(timm, "create_model", no_build)
    names = registry.names("timm/*")
    assert len(names) == len(timm.list_models()) >= 100
    assert "timm/test_resnet" in names
    assert not any(n.startswith("timm/") for n in registry.names())  # a bare * stays the eager zoo
    from learnkit.jobs.zoo import list_archs

    rows = list_archs("timm/test_*")
    assert rows and all(r["params"] is None and r["source"] == "timm" for r in rows)


def test_plugin_module_imports_neither_timm_nor_torch():
    code = (
        "import sys; from learnkit import registry; registry.get('simple_cnn'); "
        "print(sorted(m for m in ('timm', 'torch') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "[]", out.stderr


@pytest.mark.parametrize("name", TEST_MODELS)
def test_cnn_head_on_a_timm_body(name):
    model, groups = build_model(model_spec_for(f"timm/{name}", 3))
    model.eval()
    assert model(torch.rand(2, 3, 64, 64)).shape == (2, 3)
    assert len(groups) >= 3  # body groups from timm's feature stages, then the new head
    assert groups[-1] is model[1]  # the head
    in_groups = {id(p) for g in groups for p in g.parameters()}
    assert in_groups == {id(p) for p in model.parameters()}


def test_vit_tokens_become_a_one_by_one_map():
    if not timm.is_model("test_vit"):
        pytest.skip("this timm has no test_vit")
    model, _ = build_model(model_spec_for("timm/test_vit", 2))
    body = model[0].eval()
    assert body(torch.rand(1, 3, 64, 64)).shape[-2:] == (1, 1)


def test_split_follows_timm_feature_stages():
    model = registry.create("timm/test_resnet", 5)
    groups = registry.get("timm/test_resnet").layer_groups(model)
    names = {id(m): n for n, m in model.named_modules()}
    first = {names[id(m)] for m in groups[0]}
    assert {"conv1.0", "layer1", "layer2"} <= {n.split(".")[0] if n.startswith("layer") else n for n in first}
    assert any(names[id(m)].startswith("layer3") for m in groups[1])
    assert [names[id(m)] for m in groups[2]] == ["fc"]


def test_unet_over_a_timm_encoder():
    unet, groups = build_unet("timm/test_resnet", 3, None, img_size=64)
    unet.eval()
    assert unet(torch.rand(2, 3, 64, 64)).shape == (2, 3, 64, 64)
    assert len(groups) >= 2


def _fake_hf_cache(root: Path, repo: str, state: dict) -> Path:
    from safetensors.torch import save_file

    snap = root / f"models--{repo.replace('/', '--')}" / "snapshots" / "0123abc"
    snap.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(snap / "model.safetensors"))
    return snap / "model.safetensors"


def test_pretrained_reads_the_hugging_face_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(DataError, match=r"models--timm--test_resnet.*snapshots"):
        build_model(model_spec_for("timm/test_resnet", 3), pretrained="imagenet")
    torch.manual_seed(1)
    published = timm.create_model("test_resnet", num_classes=1000).state_dict()
    cfg = timm.models.get_pretrained_cfg("test_resnet")
    _fake_hf_cache(tmp_path / "hub", cfg.hf_hub_id, published)
    model, _ = build_model(model_spec_for("timm/test_resnet", 3), pretrained="imagenet")
    body_state = model[0].model.state_dict()
    assert torch.equal(body_state["conv1.0.weight"], published["conv1.0.weight"])
    assert "fc.weight" not in body_state  # the 1000-class head is dropped with the cut


@pytest.mark.slow
def test_missing_pretrained_weights_exit_3_naming_the_folder(tmp_path):
    import os

    from tests.cli.conftest import make_image_folder

    data = make_image_folder(tmp_path / "d")
    env_cache = tmp_path / "empty-hub"
    os.environ["HF_HUB_CACHE"] = str(env_cache)
    try:
        proc = run_learnkit(
            "fit", str(data), "--arch", "timm/test_resnet", "--pretrained", "imagenet", "--epochs", "1",
            "--size", "32", "--path", str(tmp_path / "run"),
        )  # fmt: skip
    finally:
        del os.environ["HF_HUB_CACHE"]
    assert proc.returncode == 3, proc.stderr
    assert str(env_cache) in proc.stderr and "model.safetensors" in proc.stderr
    assert proc.stderr.strip().count("\n") == 0
