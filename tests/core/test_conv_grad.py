"""The CPU's batched weight gradient for small convolution outputs (learnkit.conv_grad): the same
gradients as torch's own convolution, taken only where it applies, and gone after a fit."""

from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from learnkit import Learner, conv_grad
from learnkit.callback import Callback
from learnkit.callbacks.conv_grad import SmallConvGrad
from tests.core.tiny import tiny_data


def _grads(conv: nn.Conv2d, x: torch.Tensor, g: torch.Tensor) -> list[torch.Tensor]:
    x = x.clone().requires_grad_()
    conv.zero_grad()
    out = conv(x)
    out.backward(g)
    grads = [x.grad, conv.weight.grad] + ([conv.bias.grad] if conv.bias is not None else [])
    return [out.detach(), *grads]


@settings(max_examples=40, deadline=None)
@given(
    cin=st.integers(1, 12),
    cout=st.integers(1, 12),
    k=st.integers(1, 3),
    stride=st.integers(1, 2),
    pad=st.integers(0, 2),
    dil=st.integers(1, 2),
    hw=st.integers(1, 4),
    bias=st.booleans(),
    channels_last=st.booleans(),
    n=st.integers(1, 5),
)
def test_the_batched_path_gives_torchs_output_and_gradients(
    cin, cout, k, stride, pad, dil, hw, bias, channels_last, n
):
    if hw + 2 * pad < dil * (k - 1) + 1:
        return  # no output position at all: torch refuses the shape either way
    torch.manual_seed(0)
    conv = nn.Conv2d(cin, cout, k, stride=stride, padding=pad, dilation=dil, bias=bias)
    x = torch.randn(n, cin, hw, hw)
    if channels_last:
        conv, x = conv.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    g = torch.randn_like(conv(x))
    expected = _grads(conv, x, g)
    with conv_grad.small_output_grads(conv):
        took = conv_grad.takes_small_output_path(conv, x)
        got = _grads(conv, x, g)
    assert took == (g.shape[-1] * g.shape[-2] <= conv_grad.MAX_POSITIONS)
    for e, o in zip(expected, got, strict=True):
        assert o.shape == e.shape
        torch.testing.assert_close(o, e, rtol=1e-4, atol=1e-5)


def test_output_positions_match_torchs_output_shape():
    conv = nn.Conv2d(3, 4, (3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2))
    x = torch.randn(2, 3, 7, 5)
    out = conv(x)
    assert conv_grad.output_positions(conv, x) == out.shape[-2] * out.shape[-1] == 4 * 3


def _grad_fn(conv: nn.Conv2d, x: torch.Tensor) -> str:
    with conv_grad.small_output_grads(conv):
        out = conv(x)
    return "" if out.grad_fn is None else type(out.grad_fn).__name__


def test_the_batched_path_is_taken_only_where_it_applies():
    x = torch.randn(4, 8, 2, 2)
    plain = nn.Conv2d(8, 8, 3, padding=1)
    assert "SmallOutput" in _grad_fn(plain, x)  # 4 output positions, training on the CPU
    assert "SmallOutput" not in _grad_fn(plain, torch.randn(4, 8, 3, 3))  # 9 positions: torch's path
    assert "SmallOutput" not in _grad_fn(nn.Conv2d(8, 8, 3, padding=1, groups=2), x)  # grouped
    assert "SmallOutput" not in _grad_fn(nn.Conv2d(8, 8, 3, padding=1, padding_mode="reflect"), x)
    assert "SmallOutput" not in _grad_fn(nn.Conv2d(8, 8, 3, padding="same"), x)
    assert "SmallOutput" not in _grad_fn(plain.double(), x.double())  # float32 only
    plain.float()
    with torch.no_grad():
        assert _grad_fn(plain, x) == ""  # evaluation: torch's forward, no graph
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert "SmallOutput" not in _grad_fn(plain, x)
    frozen = nn.Conv2d(8, 8, 3, padding=1).requires_grad_(False)
    assert _grad_fn(frozen, x) == ""  # nothing to differentiate: torch's path


def test_subclasses_with_their_own_forward_are_left_alone():
    class Same(nn.Conv2d):
        def forward(self, x):
            return super().forward(x) * 2

    model = nn.Sequential(nn.Conv2d(3, 3, 1), Same(3, 3, 1))
    convs = conv_grad.install(model)
    assert convs == [model[0]] and "forward" not in model[1].__dict__
    conv_grad.uninstall(convs)
    assert "forward" not in model[0].__dict__


class _Seen(Callback):
    """Records, after the first batch, which convolutions had the batched forward."""

    order = 1000

    def __init__(self):
        self.installed: list[bool] = []

    def on_batch_end(self, state):
        if not self.installed:
            convs = [m for m in state.model.modules() if isinstance(m, nn.Conv2d)]
            self.installed = ["forward" in m.__dict__ for m in convs]


class _Stop(Callback):
    def on_batch_end(self, state):
        raise KeyboardInterrupt


def _conv_learner() -> Learner:
    torch.manual_seed(0)
    conv = nn.Conv2d(1, 4, 3, padding=1)  # on 2x2 images: 4 output positions
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    model = nn.Sequential(nn.Unflatten(1, (1, 2, 2)), conv, head)
    return Learner(tiny_data(n=32, n_in=4, bs=8), model)


def test_a_fit_uses_the_batched_path_and_leaves_the_model_as_it_was():
    learn = _conv_learner()
    keys = list(learn.model.state_dict())
    seen = _Seen()
    learn.fit(1, 1e-2, callbacks=[SmallConvGrad(), seen])
    assert seen.installed == [True]  # while training
    assert all("forward" not in m.__dict__ for m in learn.model.modules())  # and after: torch's again
    assert list(learn.model.state_dict()) == keys
    copy.deepcopy(learn.model)  # a plain module again


def test_an_interrupted_fit_still_gives_torchs_forward_back():
    learn = _conv_learner()
    with pytest.raises(KeyboardInterrupt):
        learn.fit(1, 1e-2, callbacks=[SmallConvGrad(), _Stop()])
    assert all("forward" not in m.__dict__ for m in learn.model.modules())


def test_a_fit_with_and_without_it_trains_the_same_weights():
    weights = []
    for cbs in ([], [SmallConvGrad()]):
        learn = _conv_learner()
        fixed_order = torch.utils.data.DataLoader(learn.data.train_dl.dataset, batch_size=8)
        learn.data.train_dl = fixed_order
        learn.fit(2, 1e-2, callbacks=cbs)
        weights.append({k: v.clone() for k, v in learn.model.state_dict().items()})
    for k in weights[0]:
        torch.testing.assert_close(weights[1][k], weights[0][k], rtol=1e-4, atol=1e-5)


def test_a_cpu_run_of_the_command_line_fits_with_it(tmp_path):
    from learnkit.jobs.setup import build_learner
    from tests.core.tiny_images import make_class_folder

    folder = make_class_folder(tmp_path / "data")
    learn = build_learner(str(folder), "resnet18", bs=4, size=32, seed=0, path=tmp_path / "run", device="cpu")
    assert sum(isinstance(cb, SmallConvGrad) for cb in learn.callbacks) == 1
    seen = _Seen()
    learn.fit(1, 1e-3, callbacks=[seen])
    assert any(seen.installed)  # resnet18's last stage at 32 px: 1x1 outputs


def test_weight_gradients_have_the_parameters_strides_for_ddp_buckets(tmp_path):
    """DDP's gradient buckets are views with each parameter's strides: a 1 x 1 channels-last weight
    (contiguous both ways, strides differing on size-1 dims) must get a gradient with its strides,
    else DDP warns "Grad strides do not match bucket view strides" and copies every step."""
    import warnings

    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.Conv2d(8, 16, 1, stride=2), nn.Conv2d(16, 4, 3, padding=1)
    ).to(memory_format=torch.channels_last)
    convs = conv_grad.install(model)
    x = torch.rand(4, 3, 4, 4).to(memory_format=torch.channels_last)
    model(x).sum().backward()
    assert all(p.grad.stride() == p.stride() for p in model.parameters())
    model.zero_grad(set_to_none=True)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        ddp = DistributedDataParallel(model)
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            ddp(x).sum().backward()
        assert not [w for w in seen if "strides" in str(w.message)], [str(w.message) for w in seen]
    finally:
        dist.destroy_process_group()
        conv_grad.uninstall(convs)
