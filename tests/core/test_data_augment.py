"""Batch transforms: Normalize against a hand computation; Augment seeded per (seed, epoch, batch)."""

import pytest
import torch

from learnkit.data import (
    IMAGENET_STATS,
    PRESETS,
    Augment,
    AugmentConfig,
    AugmentSettings,
    Normalize,
    geometry,
)
from learnkit.errors import UsageError


def run(aug: Augment, x, y=None, epoch=0, batch=0):
    aug.set_epoch(epoch, start_batch=batch)
    return aug(x.clone(), None if y is None else y.clone())


def test_normalize_matches_hand_computation():
    x = torch.tensor([0, 51, 255], dtype=torch.uint8).view(1, 3, 1, 1).expand(1, 3, 2, 2).contiguous()
    out, y = Normalize([0.1, 0.2, 0.3], [0.5, 0.5, 0.25])(x, "label")
    expected = torch.tensor([(0 - 0.1) / 0.5, (0.2 - 0.2) / 0.5, (1.0 - 0.3) / 0.25])
    assert y == "label" and out.dtype == torch.float32
    assert torch.allclose(out[0, :, 0, 0], expected, atol=1e-6)
    assert torch.allclose(Normalize()(x)[0], x.float() / 255)


def test_normalize_denormalize_round_trip():
    norm = Normalize.from_stats(IMAGENET_STATS)
    x = torch.randint(0, 256, (2, 3, 4, 4), dtype=torch.uint8)
    assert torch.allclose(norm.denormalize(norm(x)[0]), x.float() / 255, atol=1e-6)


def test_same_seed_epoch_batch_same_output_else_different():
    x = torch.rand(8, 3, 16, 16)
    aug = Augment(seed=1)
    a = run(aug, x, epoch=2, batch=5)[0]
    assert torch.equal(a, run(Augment(seed=1), x, epoch=2, batch=5)[0])
    assert not torch.equal(a, run(aug, x, epoch=3, batch=5)[0])
    assert not torch.equal(a, run(aug, x, epoch=2, batch=6)[0])
    assert not torch.equal(a, run(Augment(seed=2), x, epoch=2, batch=5)[0])


def test_batches_count_up_from_start_batch():
    x = torch.rand(4, 3, 8, 8)
    aug = Augment(seed=0)
    aug.set_epoch(1, start_batch=0)
    outs = [aug(x.clone(), None)[0] for _ in range(3)]
    assert torch.equal(outs[2], run(Augment(seed=0), x, epoch=1, batch=2)[0])


def test_augment_never_touches_the_global_rng():
    x = torch.rand(4, 3, 8, 8)
    state = torch.random.get_rng_state()
    run(Augment(seed=0), x, epoch=1, batch=1)
    assert torch.equal(torch.random.get_rng_state(), state)


def test_flip_moves_image_and_mask_identically():
    mask = torch.randint(0, 4, (16, 6, 6))
    x = torch.stack([mask.float()] * 3, dim=1)
    out, out_mask = run(Augment(seed=3, max_zoom=1.0, masks=True), x, mask)
    flips = Augment(seed=3, max_zoom=1.0).params(16, 0, 0).flip_x
    assert 0 < flips.sum() < 16  # both cases are exercised
    for i in range(16):
        expected = mask[i].flip(-1) if flips[i] else mask[i]
        assert torch.equal(out_mask[i], expected)
        assert torch.equal(out[i, 0], expected.float())


def test_zoom_moves_image_and_mask_together():
    # blocky masks: where bilinear and nearest sampling agree (away from block edges), they must match
    mask = torch.randint(0, 5, (8, 4, 4)).repeat_interleave(8, 1).repeat_interleave(8, 2)
    x = mask.unsqueeze(1).float().repeat(1, 3, 1, 1)
    out, out_mask = run(Augment(seed=0, max_zoom=1.3, masks=True), x, mask, epoch=1)
    assert out_mask.dtype == torch.long and out_mask.shape == mask.shape
    assert not torch.equal(out_mask, mask)  # something did move
    agree = (out[:, 0].round().long() == out_mask).float().mean()
    assert agree > 0.9
    assert set(out_mask.unique().tolist()) <= set(mask.unique().tolist())  # nearest: no new classes


def test_classification_targets_pass_through():
    y = torch.tensor([0, 1, 2, 3])
    _, out_y = run(Augment(seed=0), torch.rand(4, 3, 8, 8), y)
    assert torch.equal(out_y, y)


def test_zoom_stays_inside_the_image():
    aug = Augment(seed=0, max_zoom=1.2)
    m = aug.params(1000, 0, 0).matrices
    scales, shifts = m[:, 1, 1], m[:, :2, 2]
    assert ((scales >= 1 / 1.2 - 1e-6) & (scales <= 1)).all()
    assert (shifts.abs() <= (1 - scales).unsqueeze(1) + 1e-6).all()
    with pytest.raises(ValueError):
        Augment(max_zoom=0.9)


def test_fastai_preset_is_get_transforms_defaults():
    # fastai v1 vision/transform.py: get_transforms(do_flip=True, flip_vert=False, max_rotate=10.,
    # max_zoom=1.1, max_lighting=0.2, max_warp=0.2, p_affine=0.75, p_lighting=0.75)
    assert PRESETS["fastai"] == AugmentSettings(True, False, 10.0, 1.1, 0.2, 0.2, 0.75, 0.75)
    assert PRESETS["none"].is_identity and not PRESETS["light"].is_identity


def test_knobs_override_the_preset():
    s = AugmentConfig("fastai", flip=False, max_rotate=0, max_zoom=1.3).settings()
    assert (s.flip, s.max_rotate, s.max_zoom, s.max_warp) == (False, 0.0, 1.3, 0.2)
    assert AugmentConfig("none", flip_vert=True).settings().flip  # flip_vert implies flipping
    with pytest.raises(UsageError, match="preset"):
        AugmentConfig("heavy").settings()
    with pytest.raises(UsageError, match="max_zoom"):
        AugmentConfig(max_zoom=0.5).settings()


def test_dihedral_flips_are_exact_and_match_the_warp():
    x = torch.rand(32, 3, 5, 5)
    aug = Augment(seed=0, settings=AugmentConfig("none", flip_vert=True).settings())
    draws = aug.params(32, 0, 0)
    assert draws.transpose.any() and draws.flip_y.any() and draws.flip_x.any()
    exact = run(aug, x)[0]
    assert torch.allclose(exact, geometry.warp(x, draws.matrices, mode="nearest"))
    assert torch.equal(exact.flatten(1).sort()[0], x.flatten(1).sort()[0])  # pixels only moved


def test_fastai_preset_moves_masks_with_images_and_keeps_the_range():
    mask = torch.randint(0, 5, (8, 4, 4)).repeat_interleave(8, 1).repeat_interleave(8, 2)
    x = (mask.unsqueeze(1).repeat(1, 3, 1, 1) * 50).to(torch.uint8)
    settings = AugmentConfig("fastai", max_lighting=0).settings()
    out, out_mask = run(Augment(seed=0, masks=True, settings=settings), x, mask, epoch=1)
    assert out.dtype == torch.float32 and 0 <= out.min() and out.max() <= 1
    assert not torch.equal(out_mask, mask)
    agree = ((out[:, 0] * 255 / 50).round().long() == out_mask).float().mean()
    assert agree > 0.85
    assert set(out_mask.unique().tolist()) <= set(mask.unique().tolist())


def test_lighting_keeps_order_and_range():
    x = torch.linspace(0.05, 0.95, 64).view(1, 1, 8, 8).repeat(16, 3, 1, 1)
    settings = AugmentConfig("none", max_lighting=0.2).settings()
    out = run(Augment(seed=0, settings=settings), x)[0]
    assert not torch.allclose(out, x)
    flat = out.flatten(1)
    assert (flat.diff(dim=1)[:, :63] >= 0).all()  # monotone per image: brightness/contrast only
    assert (0 < out).all() and (out < 1).all()


def test_switching_a_transform_off_keeps_the_other_draws():
    full = Augment(seed=4, settings=PRESETS["fastai"]).params(64, 2, 3)
    no_warp = Augment(seed=4, settings=AugmentConfig("fastai", max_warp=0).settings()).params(64, 2, 3)
    assert torch.equal(full.flip_x, no_warp.flip_x) and torch.equal(full.brightness, no_warp.brightness)
