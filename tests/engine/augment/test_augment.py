"""Tests for crlc_engine.augment.batch_augment (batched per-sample augmentation)."""

from __future__ import annotations

import colorsys
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF
from torch import Tensor

from crlc_engine.augment.batch_augment import AugmentConfig, AugmentParams, BatchAugmenter
from crlc_engine.augment.color import (
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    hsv_to_rgb,
    rgb_to_grayscale,
    rgb_to_hsv,
)
from crlc_engine.augment.normalize import dataset_mean_std, normalize_only
from crlc_engine.augment.spatial import crop_resize_flip, gaussian_blur

# Everything off: full-image crop, no flip / jitter / grayscale / blur.
IDENTITY = AugmentConfig(
    crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_p=0.0, jitter_p=0.0, grayscale_p=0.0
)
# No normalisation, to look at [0, 1] pixel values.
ZERO3 = (0.0, 0.0, 0.0)
ONE3 = (1.0, 1.0, 1.0)


def _images(n: int = 16, size: int = 32, seed: int = 0, device: str = "cpu") -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, size, size, 3), dtype=torch.uint8, generator=g).to(device)


def _smooth_images(n: int = 8, size: int = 32, seed: int = 0) -> Tensor:
    """Random images with some spatial structure (blurred noise), uint8 [n, size, size, 3]."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, size // 4, size // 4, generator=g)
    x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear")
    return (x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def _gen(seed: int, device: str = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def _to_unit(images: Tensor) -> Tensor:
    return images.permute(0, 3, 1, 2).float() / 255.0


# ------------------------------------------------------------------- basic contract


@pytest.mark.parametrize("out_size", [32, 24, 40])
def test_output_shape_dtype_device(out_size: int) -> None:
    images = _images(8, 32)
    out = BatchAugmenter(AugmentConfig(), out_size)(images, _gen(0))
    assert out.shape == (8, 3, out_size, out_size)
    assert out.dtype == torch.float32
    assert out.device == images.device
    assert torch.isfinite(out).all()


def test_dtype_option_and_blur_on() -> None:
    aug = BatchAugmenter(AugmentConfig(blur=True), 32)
    out = aug(_images(4), _gen(0), dtype=torch.bfloat16)
    assert out.dtype == torch.bfloat16 and out.shape == (4, 3, 32, 32)


def test_deterministic_given_generator_state() -> None:
    images = _images(16)
    aug = BatchAugmenter(AugmentConfig(blur=True), 32)
    a = aug(images, _gen(123))
    b = aug(images, _gen(123))
    c = aug(images, _gen(124))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    # resuming from a saved generator state reproduces the next view bit for bit
    g = _gen(7)
    aug(images, g)
    state = g.get_state()
    nxt = aug(images, g)
    g2 = torch.Generator()
    g2.set_state(state)
    assert torch.equal(aug(images, g2), nxt)


def test_default_rng_when_no_generator() -> None:
    images = _images(4)
    aug = BatchAugmenter(AugmentConfig(), 32)
    torch.manual_seed(5)
    a = aug(images)
    torch.manual_seed(5)
    assert torch.equal(a, aug(images))


def test_two_views_match_two_calls() -> None:
    images = _images(8)
    aug = BatchAugmenter(AugmentConfig(), 32)
    v1, v2 = aug.two_views(images, _gen(3))
    g = _gen(3)
    assert torch.equal(v1, aug(images, g))
    assert torch.equal(v2, aug(images, g))
    assert not torch.allclose(v1, v2)


def test_call_equals_sample_params_then_apply() -> None:
    images = _images(8)
    aug = BatchAugmenter(AugmentConfig(blur=True), 32)
    params = aug.sample_params(8, 32, 32, "cpu", _gen(11))
    assert torch.equal(aug.apply(images, params), aug(images, _gen(11)))


def test_per_sample_parameters_differ() -> None:
    # the same image 64 times: every sample must still get its own view
    images = _smooth_images(1).expand(64, -1, -1, -1).contiguous()
    aug = BatchAugmenter(AugmentConfig(), 32)
    params = aug.sample_params(64, 32, 32, "cpu", _gen(0))
    for name in ("top", "left", "height", "width", "brightness", "contrast", "saturation", "hue"):
        assert getattr(params, name).unique().numel() > 5, name
    assert 0 < int(params.flip.sum()) < 64
    assert 0 < int(params.jitter.sum()) < 64
    assert len({tuple(row) for row in params.order.tolist()}) > 5
    out = aug.apply(images, params).reshape(64, -1)
    max_diff = (out[:, None] - out[None]).abs().amax(dim=-1)  # [64, 64]
    off_diagonal = ~torch.eye(64, dtype=torch.bool)
    assert (max_diff[off_diagonal] > 1e-2).all()  # all pairs of samples differ


def test_crop_parameters_in_range() -> None:
    cfg = AugmentConfig()
    aug = BatchAugmenter(cfg, 32)
    p = aug.sample_params(4096, 32, 32, "cpu", _gen(1))
    area = p.height * p.width / (32 * 32)
    ratio = p.width / p.height
    assert (p.height >= 1).all() and (p.width >= 1).all()
    assert (p.top >= 0).all() and (p.top + p.height <= 32).all()
    assert (p.left >= 0).all() and (p.left + p.width <= 32).all()
    assert torch.equal(p.top, p.top.round()) and torch.equal(p.width, p.width.round())
    # rounding to whole pixels widens the ranges slightly
    assert area.min() > 0.15 and area.max() <= 1.0
    assert ratio.min() > 0.7 and ratio.max() < 1.45
    assert abs(float(p.flip.float().mean()) - 0.5) < 0.05
    assert abs(float(p.jitter.float().mean()) - 0.8) < 0.05
    assert abs(float(p.grayscale.float().mean()) - 0.2) < 0.05
    assert not p.blur.any()
    b = p.brightness
    assert b.min() >= 0.6 and b.max() <= 1.4 and abs(float(b.mean()) - 1.0) < 0.02
    assert p.hue.abs().max() <= 0.1


def test_crop_fallback_for_non_square_images() -> None:
    # an 8 x 32 image cannot hold a full-area square crop: torchvision falls back to
    # the largest centred crop with the ratio clamped to the range, here 8 x 8.
    aug = BatchAugmenter(replace(IDENTITY, mean=ZERO3, std=ONE3), 8)
    p = aug.sample_params(4, 8, 32, "cpu", _gen(0))
    assert torch.equal(p.height, torch.full((4,), 8.0))
    assert torch.equal(p.width, torch.full((4,), 8.0))
    assert torch.equal(p.left, torch.full((4,), 12.0)) and torch.equal(p.top, torch.zeros(4))
    images = _images(4, 32)[:, :8]  # [4, 8, 32, 3]
    out = aug(images, _gen(0))
    torch.testing.assert_close(out, _to_unit(images)[..., 12:20], atol=1e-5, rtol=0)


# ------------------------------------------------------------- geometric identities


def test_identity_path_equals_normalize_only() -> None:
    images = _images(16)
    out = BatchAugmenter(IDENTITY, 32)(images, _gen(0))
    torch.testing.assert_close(out, normalize_only(images, IDENTITY), atol=1e-5, rtol=0)


def test_identity_path_upsampling_equals_normalize_only() -> None:
    # upsampling 32 -> 48: antialias has no effect, both are plain bilinear
    images = _images(4)
    out = BatchAugmenter(IDENTITY, 48)(images, _gen(0))
    torch.testing.assert_close(out, normalize_only(images, IDENTITY, 48), atol=1e-4, rtol=0)


def test_flip_only_equals_torch_flip() -> None:
    images = _images(8)
    cfg = replace(IDENTITY, flip_p=1.0)
    out = BatchAugmenter(cfg, 32)(images, _gen(0))
    expected = torch.flip(normalize_only(images, cfg), dims=[-1])
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


def test_crop_resize_flip_integer_box_is_a_slice() -> None:
    x = _to_unit(_images(2))
    ones = torch.ones(2)
    out = crop_resize_flip(x, 3 * ones, 5 * ones, 16 * ones, 16 * ones, ones.bool(), 16)
    torch.testing.assert_close(out, torch.flip(x[:, :, 3:19, 5:21], dims=[-1]), atol=1e-5, rtol=0)


# ----------------------------------------------------------------------- colour ops


def test_grayscale_only_gives_equal_channels() -> None:
    images = _images(8)
    cfg = replace(IDENTITY, grayscale_p=1.0, mean=ZERO3, std=ONE3)
    out = BatchAugmenter(cfg, 32)(images, _gen(0))
    torch.testing.assert_close(out[:, 0], out[:, 1], atol=0, rtol=0)
    torch.testing.assert_close(out[:, 0], out[:, 2], atol=0, rtol=0)
    x = _to_unit(images)
    luma = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    torch.testing.assert_close(out[:, 0], luma, atol=1e-5, rtol=0)
    torch.testing.assert_close(rgb_to_grayscale(x)[:, 0], luma, atol=1e-6, rtol=0)


def test_hue_rotation_red_to_green_to_blue() -> None:
    red = torch.zeros(3, 3, 4, 4)
    red[:, 0] = 1.0
    out = adjust_hue(red, torch.tensor([1 / 3, 2 / 3, -1 / 3]))
    green = torch.zeros(3, 4, 4)
    green[1] = 1.0
    blue = torch.zeros(3, 4, 4)
    blue[2] = 1.0
    torch.testing.assert_close(out[0], green, atol=1e-5, rtol=0)
    torch.testing.assert_close(out[1], blue, atol=1e-5, rtol=0)
    torch.testing.assert_close(out[2], blue, atol=1e-5, rtol=0)  # -1/3 turn == +2/3


def test_hsv_helpers_against_colorsys_and_round_trip() -> None:
    x = torch.rand(4, 3, 16, 16, generator=_gen(0))
    x[0, :, 0, 0] = 0.5  # a grey pixel (hue undefined -> 0)
    x[0, :, 0, 1] = 0.0  # black
    x[0, :, 0, 2] = torch.tensor([1.0, 1.0, 0.0])  # a tie of the maxima
    hsv = rgb_to_hsv(x)
    assert hsv.shape == x.shape
    assert hsv.min() >= 0 and hsv.max() <= 1
    for b, i, j in [(0, 0, 0), (0, 0, 1), (0, 0, 2), (1, 3, 5), (2, 7, 7), (3, 15, 0)]:
        r, g, bl = x[b, :, i, j].tolist()
        ref = colorsys.rgb_to_hsv(r, g, bl)
        mine = hsv[b, :, i, j].tolist()
        h_diff = abs(mine[0] - ref[0])
        assert min(h_diff, 1 - h_diff) < 1e-5
        assert mine[1:] == pytest.approx(list(ref[1:]), abs=1e-6)
        back = colorsys.hsv_to_rgb(*mine)
        assert hsv_to_rgb(hsv)[b, :, i, j].tolist() == pytest.approx(list(back), abs=1e-5)
    torch.testing.assert_close(hsv_to_rgb(hsv), x, atol=1e-5, rtol=0)
    # leading dims are batch dims
    torch.testing.assert_close(hsv_to_rgb(rgb_to_hsv(x[0])), x[0], atol=1e-5, rtol=0)


def test_brightness_semantics() -> None:
    x = torch.rand(4, 3, 8, 8, generator=_gen(0))
    f = torch.tensor([0.6, 1.0, 1.3, 0.0])
    out = adjust_brightness(x, f)
    torch.testing.assert_close(out, (x * f.view(-1, 1, 1, 1)).clamp(0, 1), atol=0, rtol=0)
    assert torch.equal(out[1], x[1])  # factor 1 is exactly the identity
    assert (out[3] == 0).all()


def test_brightness_through_augmenter() -> None:
    images = _smooth_images(32)
    cfg = replace(
        IDENTITY, jitter_p=1.0, contrast=0.0, saturation=0.0, hue=0.0, mean=ZERO3, std=ONE3
    )
    aug = BatchAugmenter(cfg, 32)
    params = aug.sample_params(32, 32, 32, "cpu", _gen(2))
    out = aug.apply(images, params)
    x = _to_unit(images)
    expected = (x * params.brightness.view(-1, 1, 1, 1)).clamp(0, 1)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
    assert params.brightness.min() >= 0.6 and params.brightness.max() <= 1.4


@pytest.mark.parametrize(
    ("mine", "ref"),
    [
        (adjust_brightness, TF.adjust_brightness),
        (adjust_contrast, TF.adjust_contrast),
        (adjust_saturation, TF.adjust_saturation),
        (adjust_hue, TF.adjust_hue),
    ],
)
def test_colour_ops_match_torchvision(mine: object, ref: object) -> None:
    x = torch.rand(6, 3, 12, 12, generator=_gen(1))
    if mine is adjust_hue:
        factors = torch.tensor([-0.5, -0.1, 0.0, 0.05, 0.1, 0.5])
    else:
        factors = torch.tensor([0.0, 0.6, 0.9, 1.0, 1.2, 1.4])
    out = mine(x, factors)  # type: ignore[operator]
    expected = torch.stack([ref(x[i], float(factors[i])) for i in range(6)])  # type: ignore[operator]
    # torchvision's luma uses 0.2989 for red, ITU-R 601 (used here) 0.299
    torch.testing.assert_close(out, expected, atol=1e-4, rtol=0)


def test_jitter_follows_per_sample_order() -> None:
    images = _smooth_images(32, seed=3)
    cfg = replace(IDENTITY, jitter_p=0.75, mean=ZERO3, std=ONE3)
    aug = BatchAugmenter(cfg, 32)
    params = aug.sample_params(32, 32, 32, "cpu", _gen(4))
    out = aug.apply(images, params)
    x = _to_unit(images)
    ops = (
        (adjust_brightness, params.brightness),
        (adjust_contrast, params.contrast),
        (adjust_saturation, params.saturation),
        (adjust_hue, params.hue),
    )
    for b in range(32):
        y = x[b : b + 1]
        if params.jitter[b]:
            for k in params.order[b].tolist():
                fn, values = ops[k]
                y = fn(y, values[b : b + 1])
        torch.testing.assert_close(out[b : b + 1], y, atol=1e-5, rtol=0)
    # with p < 1 some samples are untouched, bit for bit
    untouched = ~params.jitter
    assert untouched.any()
    assert torch.equal(out[untouched], x[untouched])


# ----------------------------------------------------------------------------- blur


def test_blur_constant_image_and_variance() -> None:
    const = torch.full((2, 3, 16, 16), 0.37)
    blurred = gaussian_blur(const, torch.tensor([0.1, 2.0]), 9)
    torch.testing.assert_close(blurred, const, atol=1e-6, rtol=0)
    x = torch.rand(3, 3, 32, 32, generator=_gen(0))
    sigma = torch.tensor([0.1, 1.0, 2.0])
    y = gaussian_blur(x, sigma, 9)
    var_x = x.var(dim=(1, 2, 3))
    var_y = y.var(dim=(1, 2, 3))
    assert var_y[0] == pytest.approx(float(var_x[0]), rel=1e-3)  # sigma 0.1 ~ identity
    assert var_y[1] < 0.3 * var_x[1]
    assert var_y[2] < var_y[1]
    assert y.mean(dim=(1, 2, 3)) == pytest.approx(x.mean(dim=(1, 2, 3)).tolist(), abs=5e-3)


def test_blur_matches_torchvision() -> None:
    x = torch.rand(4, 3, 20, 20, generator=_gen(0))
    sigma = torch.tensor([0.1, 0.7, 1.5, 2.0])
    out = gaussian_blur(x, sigma, 9)
    expected = torch.stack(
        [TF.gaussian_blur(x[i], [9, 9], [float(sigma[i])] * 2) for i in range(4)]
    )
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


def test_blur_in_augmenter_probability() -> None:
    images = _smooth_images(16)
    cfg = replace(IDENTITY, blur=True, blur_p=0.5, mean=ZERO3, std=ONE3)
    aug = BatchAugmenter(cfg, 32)
    params = aug.sample_params(16, 32, 32, "cpu", _gen(5))
    assert 0 < int(params.blur.sum()) < 16
    out = aug.apply(images, params)
    x = _to_unit(images)
    assert torch.equal(out[~params.blur], x[~params.blur])
    expected = gaussian_blur(x, params.sigma, 9)
    torch.testing.assert_close(out[params.blur], expected[params.blur], atol=1e-6, rtol=0)


# ---------------------------------------------------------------- evaluation path


def test_normalize_only() -> None:
    images = _images(4)
    cfg = AugmentConfig()
    out = normalize_only(images, cfg)
    mean = torch.tensor(cfg.mean).view(1, 3, 1, 1)
    std = torch.tensor(cfg.std).view(1, 3, 1, 1)
    torch.testing.assert_close(out, (_to_unit(images) - mean) / std, atol=1e-5, rtol=1e-6)
    assert torch.equal(normalize_only(images, cfg, 32), out)  # same size: no resize
    small = normalize_only(images, cfg, 16)
    assert small.shape == (4, 3, 16, 16) and small.dtype == torch.float32
    # downsampling is antialiased bilinear
    resized = torch.nn.functional.interpolate(
        _to_unit(images), size=(16, 16), mode="bilinear", align_corners=False, antialias=True
    )
    torch.testing.assert_close(small, (resized - mean) / std, atol=1e-5, rtol=1e-6)
    # float input in [0, 1] is accepted and not modified
    as_float = _to_unit(images).permute(0, 2, 3, 1)
    before = as_float.clone()
    torch.testing.assert_close(normalize_only(as_float, cfg), out, atol=1e-6, rtol=0)
    assert torch.equal(as_float, before)
    assert normalize_only(images, cfg, dtype=torch.float16).dtype == torch.float16


def test_dataset_mean_std_against_numpy() -> None:
    images = _images(50, 8, seed=9)
    images[:, :, :, 2] //= 2  # make the channels differ
    arr = images.numpy().astype(np.float64) / 255.0
    ref_mean = arr.mean(axis=(0, 1, 2))
    ref_std = arr.std(axis=(0, 1, 2))
    mean, std = dataset_mean_std(images, chunk_pixels=100)  # several chunks
    np.testing.assert_allclose(mean, ref_mean, rtol=1e-12)
    np.testing.assert_allclose(std, ref_std, rtol=1e-10)
    # strided subset when there are more images than max_images
    mean_s, std_s = dataset_mean_std(images, max_images=20)
    sub = arr[::3]
    np.testing.assert_allclose(mean_s, sub.mean(axis=(0, 1, 2)), rtol=1e-12)
    np.testing.assert_allclose(std_s, sub.std(axis=(0, 1, 2)), rtol=1e-10)


# -------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "kwargs",
    [
        {"crop_scale": (0.0, 1.0)},
        {"crop_scale": (0.5, 0.4)},
        {"crop_scale": (0.2, 1.5)},
        {"crop_ratio": (0.0, 1.0)},
        {"crop_ratio": (2.0, 1.0)},
        {"flip_p": 1.5},
        {"jitter_p": -0.1},
        {"grayscale_p": math.nan},
        {"brightness": -0.1},
        {"hue": 0.6},
        {"blur_kernel": 8},
        {"blur_kernel": 0},
        {"blur_sigma": (0.0, 1.0)},
        {"mean": (0.5, 0.5)},
        {"std": (0.2, 0.0, 0.2)},
    ],
)
def test_config_validation(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        AugmentConfig(**kwargs)  # type: ignore[arg-type]


def test_config_accepts_lists_and_is_hashable() -> None:
    cfg = AugmentConfig(mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25])  # type: ignore[arg-type]
    assert cfg.mean == (0.5, 0.5, 0.5)
    hash(cfg)


def test_bad_inputs() -> None:
    with pytest.raises(ValueError):
        BatchAugmenter(AugmentConfig(), 0)
    with pytest.raises(ValueError):
        BatchAugmenter(AugmentConfig(blur=True), 4)  # 9-tap reflect blur needs > 4 px
    aug = BatchAugmenter(AugmentConfig(), 32)
    with pytest.raises(ValueError):
        aug(torch.zeros(2, 3, 32, 32, dtype=torch.uint8))  # channels-first
    with pytest.raises(ValueError):
        aug(torch.zeros(2, 32, 32, 3, dtype=torch.int32))
    with pytest.raises(ValueError):
        dataset_mean_std(torch.zeros(0, 4, 4, 3, dtype=torch.uint8))
    assert isinstance(aug.sample_params(2, 32, 32, "cpu"), AugmentParams)


# ----------------------------------------------------------------------------- CUDA


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu_and_does_not_sync() -> None:
    cpu_images = _images(64)
    images = cpu_images.cuda()
    aug = BatchAugmenter(AugmentConfig(blur=True), 32)
    out = aug(images, _gen(0, "cuda"))  # warm-up (cuDNN / cuBLAS handles)
    assert out.device.type == "cuda" and out.shape == (64, 3, 32, 32)
    assert torch.equal(out, aug(images, _gen(0, "cuda")))
    g = _gen(1, "cuda")
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        v1, v2 = aug.two_views(images, g)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert not torch.allclose(v1, v2)
    # the same parameters give the same result on both devices (smooth images and a
    # loose tolerance: cuDNN may run the blur in TF32, and a global TF32 matmul setting
    # would perturb the affine grid slightly)
    smooth = _smooth_images(64)
    params = aug.sample_params(64, 32, 32, "cpu", _gen(2))
    params_cuda = AugmentParams(**{k: v.cuda() for k, v in vars(params).items()})
    torch.testing.assert_close(
        aug.apply(smooth.cuda(), params_cuda).cpu(), aug.apply(smooth, params), atol=1e-2, rtol=0
    )
    # evaluation helpers
    torch.testing.assert_close(
        normalize_only(images, AugmentConfig()).cpu(),
        normalize_only(cpu_images, AugmentConfig()),
        atol=1e-6,
        rtol=0,
    )
    mean, std = dataset_mean_std(images)
    assert mean == pytest.approx(dataset_mean_std(cpu_images)[0], abs=1e-12)
    assert std == pytest.approx(dataset_mean_std(cpu_images)[1], abs=1e-12)
