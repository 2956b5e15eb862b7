"""timm's families at a small size: a sample of real (tiny) archs builds with a new head, trains a
step, saves and reloads, at 32 px (random init, nothing downloaded). Transformers get the data's
size as ``img_size``; one that cannot take the size asked is a UsageError naming the sizes it takes.
"""

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from learnkit import registry
from learnkit.data.bunch import DataBunch
from learnkit.errors import UsageError
from learnkit.vision.learners import cnn_learner, load_learner

timm = pytest.importorskip("timm")
SIZE = 32
FAMILIES = [
    "vit_tiny_patch16_224",  # ViT (fixed 224 by default)
    "swin_tiny_patch4_window7_224",  # Swin (windows)
    "convnext_atto",  # ConvNeXt (CNN, channels-last stages)
    "efficientnet_b0",  # EfficientNet (CNN)
    "maxvit_nano_rw_256",  # MaxViT (CNN + attention grids)
    "levit_128s",  # LeViT (attention biases sized by the input)
    "vit_tiny_r_s16_p8_224",  # a hybrid: ResNet stem + ViT
]


def _data(size: int = SIZE) -> DataBunch:
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(8, 3, size, size, generator=g), torch.arange(8) % 2
    dl = DataLoader(TensorDataset(x, y), batch_size=4)
    return DataBunch(dl, dl, classes=["a", "b"], device="cpu", size=size)


@pytest.mark.parametrize("name", [n for n in FAMILIES if timm.is_model(n)])
def test_family_builds_trains_saves_and_reloads_at_32px(name, tmp_path):
    torch.manual_seed(0)
    learn = cnn_learner(_data(), f"timm/{name}", path=tmp_path)
    learn.quiet = True
    assert learn.model_spec["kwargs"].get("img_size") in (None, SIZE)
    before = [p.detach().clone() for p in learn.model.parameters()]
    learn.fit(1, 1e-3)
    assert any(not torch.equal(a, p) for a, p in zip(before, learn.model.parameters()))  # it trained
    learn.save("m", with_opt=False)
    again = load_learner("m", path=tmp_path, device="cpu")
    x = torch.rand(2, 3, SIZE, SIZE)
    learn.model.eval(), again.model.eval()
    with torch.no_grad():
        assert torch.allclose(learn.model(x), again.model(x), atol=1e-5)


def test_a_size_the_model_cannot_take_names_the_ones_it_can():
    if not timm.is_model("efficientformer_l1"):
        pytest.skip("this timm has no efficientformer_l1")
    with pytest.raises(UsageError, match=r"cannot take 32 px images.*sizes it takes: .*224 px"):
        cnn_learner(_data(), "timm/efficientformer_l1")


def test_entry_gives_native_size_and_size_kwarg():
    entry = registry.get("timm/vit_tiny_patch16_224")
    assert entry.native_size == 224 and entry.size_kwargs(32) == {"img_size": 32}
    assert registry.get("resnet18").size_kwargs(32) == {}


def test_completion_offers_the_family_prefix_then_its_names():
    assert "timm/" in registry.complete("ti")
    names = registry.complete("timm/vit_tiny_p")
    assert "timm/vit_tiny_patch16_224" in names and all(n.startswith("timm/vit_tiny_p") for n in names)
    assert "resnet18" in registry.complete("resn")


def test_timm_names_without_the_plugin_say_what_to_install(monkeypatch):
    from learnkit.jobs.zoo import list_archs

    registry._load_plugins()
    monkeypatch.delitem(registry._families, "timm/")
    kept = {k: v for k, v in registry._entries.items() if not k.startswith("timm/")}
    monkeypatch.setattr(registry, "_entries", kept)  # as in a process without timm
    with pytest.raises(UsageError, match=r"pip install 'learnkit\[timm\]'"):
        list_archs("timm/*")
    with pytest.raises(UsageError, match=r"learnkit\[timm\]"):
        registry.get("timm/not_cached_name_xyz")
