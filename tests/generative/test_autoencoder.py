"""The KL autoencoder (note G1) against diffusers' AutoencoderKL with its weights imported:
latent mean / log-variance, samples, KL and decoded images (float32 and float64); the loss
trains; the scaling factor; errors."""

from __future__ import annotations

import pytest
import torch
from conftest import require

from paperlab.errors import ConfigError, ShapeError
from paperlab.generative.autoencoder import (
    AutoencoderConfig,
    AutoencoderKL,
    autoencoder_loss,
    estimate_scaling_factor,
)
from paperlab.hub.diffusers import autoencoder_from_diffusers

pytestmark = pytest.mark.note("G1", reference="diffusers AutoencoderKL")

TINY = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
    up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
    block_out_channels=(32, 64),
    layers_per_block=1,
    latent_channels=4,
    norm_num_groups=8,
    sample_size=16,
)


def tiny_reference(diffusers, **overrides):
    torch.manual_seed(0)
    ref = diffusers.AutoencoderKL(**{**TINY, **overrides}).eval()
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return ref


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_autoencoder_equals_diffusers_with_imported_weights(dtype):
    diffusers = require("diffusers")
    ref = tiny_reference(diffusers).to(dtype)
    ours = autoencoder_from_diffusers(dict(ref.config), ref.state_dict()).eval().to(dtype)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 16, 16, generator=g, dtype=dtype)
    tol = 2e-5 if dtype == torch.float32 else 1e-10
    with torch.no_grad():
        post, ref_post = ours.encode(x), ref.encode(x).latent_dist
        torch.testing.assert_close(post.mean, ref_post.mean, rtol=0, atol=tol)
        torch.testing.assert_close(post.logvar, ref_post.logvar, rtol=0, atol=tol)
        torch.testing.assert_close(post.kl(), ref_post.kl(), rtol=1e-5, atol=tol)
        z = post.sample(torch.Generator().manual_seed(3))
        z_ref = ref_post.sample(torch.Generator().manual_seed(3))
        torch.testing.assert_close(z, z_ref, rtol=0, atol=tol)
        torch.testing.assert_close(ours.decode(z), ref.decode(z).sample, rtol=0, atol=tol)
    assert ours.config.scaling_factor == ref.config.scaling_factor
    assert post.mean.shape == (2, 4, 8, 8)


def test_three_levels_two_layers_equal_diffusers():
    diffusers = require("diffusers")
    ref = tiny_reference(
        diffusers,
        block_out_channels=(16, 32, 32),
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        layers_per_block=2,
        latent_channels=3,
        norm_num_groups=4,
    ).double()
    ours = autoencoder_from_diffusers(dict(ref.config), ref.state_dict()).eval().double()
    x = torch.randn(1, 3, 8, 12, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(
            ours.encode(x).mean, ref.encode(x).latent_dist.mean, rtol=0, atol=1e-10
        )
        z = torch.randn(1, 3, 2, 3, dtype=torch.float64)
        torch.testing.assert_close(ours.decode(z), ref.decode(z).sample, rtol=0, atol=1e-10)


def test_training_lowers_the_loss_and_scaling_factor():
    torch.manual_seed(0)
    model = AutoencoderKL(AutoencoderConfig(block_out_channels=(8, 16), norm_num_groups=4))
    x = torch.rand(8, 3, 8, 8) * 2 - 1
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(60):
        rec, post = model(x, g)
        loss, parts = autoencoder_loss(x, rec, post, kl_weight=1e-3)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(parts["reconstruction"])
    assert losses[-1] < 0.5 * losses[0]
    with torch.no_grad():
        z = model.encode(x).mean
    s = estimate_scaling_factor(z)
    assert abs(float((z * s).std()) - 1.0) < 1e-5


def test_errors_name_the_argument():
    diffusers = require("diffusers")
    model = AutoencoderKL(AutoencoderConfig(block_out_channels=(8, 16), norm_num_groups=4))
    with pytest.raises(ShapeError, match=r"x must have shape \(B, 3, H, W\)"):
        model.encode(torch.zeros(1, 1, 8, 8))
    with pytest.raises(ShapeError, match="divisible by 2"):
        model.encode(torch.zeros(1, 3, 9, 8))
    with pytest.raises(ShapeError, match=r"z must have shape \(B, 4, h, w\)"):
        model.decode(torch.zeros(1, 3, 4, 4))
    with pytest.raises(ConfigError, match="divisible by norm_num_groups"):
        AutoencoderConfig(block_out_channels=(10, 16), norm_num_groups=4)
    ref = tiny_reference(diffusers)
    with pytest.raises(ConfigError, match="shift_factor"):
        autoencoder_from_diffusers({**dict(ref.config), "shift_factor": 0.1}, ref.state_dict())
