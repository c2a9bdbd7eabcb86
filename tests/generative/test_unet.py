"""The conditional UNet (note G1) against diffusers' UNet2DConditionModel with its weights
imported (tiny config, several context tokens), in float32 and float64; the timestep
embedding; the context is used; weight-import and bad-input errors."""

from __future__ import annotations

import pytest
import torch
from conftest import require

from paperlab.benchmarks.generative.unet import TINY  # the tiny config, shared
from paperlab.errors import ArgumentError, ConfigError, ShapeError
from paperlab.generative.unet import UNet, UNetConfig, timestep_embedding
from paperlab.hub.base import WeightImportError
from paperlab.hub.diffusers import unet_from_diffusers

pytestmark = pytest.mark.note("G1", reference="diffusers UNet2DConditionModel")



def tiny_reference(diffusers, **overrides):
    torch.manual_seed(0)
    ref = diffusers.UNet2DConditionModel(**{**TINY, **overrides}).eval()
    with torch.no_grad():  # move every weight off its init (zero-init convs, unit norms)
        for p in ref.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return ref


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_unet_equals_diffusers_with_imported_weights(dtype):
    diffusers = require("diffusers")
    ref = tiny_reference(diffusers).to(dtype)
    ours = unet_from_diffusers(dict(ref.config), ref.state_dict()).eval().to(dtype)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, 8, 8, generator=g, dtype=dtype)
    ctx = torch.randn(2, 7, 32, generator=g, dtype=dtype)  # 7 context tokens
    t = torch.tensor([3, 815])
    with torch.no_grad():
        a = ours(x, t, ctx)
        b = ref(x, t, encoder_hidden_states=ctx).sample
    tol = 2e-5 if dtype == torch.float32 else 1e-10
    torch.testing.assert_close(a, b, rtol=0, atol=tol)
    assert b.abs().max() > 0.5  # not a trivially small output
    with torch.no_grad():  # the written-out attention gives the same
        c = ours.set_fused_attention(False)(x, t, ctx)
    torch.testing.assert_close(c, b, rtol=0, atol=tol)


def test_unet_two_levels_of_layers_and_larger_input_equal_diffusers():
    diffusers = require("diffusers")
    ref = tiny_reference(
        diffusers,
        layers_per_block=2,
        block_out_channels=(16, 32, 32),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        attention_head_dim=4,
        cross_attention_dim=24,
    ).double()
    ours = unet_from_diffusers(dict(ref.config), ref.state_dict()).eval().double()
    x = torch.randn(1, 4, 12, 16, dtype=torch.float64)
    ctx = torch.randn(1, 3, 24, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(
            ours(x, 250, ctx), ref(x, 250, encoder_hidden_states=ctx).sample, rtol=0, atol=1e-10
        )


def test_timestep_embedding_equals_diffusers():
    diffusers = require("diffusers")
    from diffusers.models.embeddings import get_timestep_embedding

    t = torch.tensor([0, 1, 17, 999])
    for dim in (32, 33):
        ref = get_timestep_embedding(t, dim, flip_sin_to_cos=True, downscale_freq_shift=0)
        torch.testing.assert_close(timestep_embedding(t, dim), ref, rtol=0, atol=0)
    assert diffusers


def test_output_depends_on_the_context_and_the_timestep():
    torch.manual_seed(0)
    model = UNet(UNetConfig(block_out_channels=(16, 32), num_heads=4, norm_num_groups=4))
    x = torch.randn(2, 4, 8, 8)
    c1, c2 = torch.randn(2, 3, 32), torch.randn(2, 3, 32)
    with torch.no_grad():
        # at the default init, cross-attention and the timestep both reach the output
        assert (model(x, 5, c1) - model(x, 5, c2)).abs().max() > 1e-4
        assert (model(x, 5, c1) - model(x, 900, c1)).abs().max() > 1e-4
        # one context token per sample (a class embedding) works too
        assert model(x, torch.tensor([1, 2]), c1[:, :1]).shape == (2, 4, 8, 8)


def test_import_errors_name_the_problem():
    diffusers = require("diffusers")
    ref = tiny_reference(diffusers)
    config, state = dict(ref.config), dict(ref.state_dict())
    with pytest.raises(ConfigError, match="use_linear_projection"):
        unet_from_diffusers({**config, "use_linear_projection": True}, state)
    with pytest.raises(ConfigError, match="down_block_types entry 'AttnDownBlock2D'"):
        unet_from_diffusers(
            {**config, "down_block_types": ["AttnDownBlock2D", "DownBlock2D"]}, state
        )
    with pytest.raises(ConfigError, match="must mirror"):
        unet_from_diffusers(
            {**config, "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"]}, state
        )
    with pytest.raises(WeightImportError, match="no place in the model: extra.weight"):
        unet_from_diffusers(config, {**state, "extra.weight": torch.zeros(1)})
    missing = {k: v for k, v in state.items() if "attn2.to_k" not in k}
    with pytest.raises(WeightImportError, match="missing"):
        unet_from_diffusers(config, missing)


def test_bad_input_names_the_argument():
    model = UNet(UNetConfig(block_out_channels=(16, 32), num_heads=4, norm_num_groups=4))
    x, ctx = torch.randn(2, 4, 8, 8), torch.randn(2, 3, 32)
    with pytest.raises(ShapeError, match=r"x must have shape \(B, 4, H, W\)"):
        model(torch.randn(2, 3, 8, 8), 1, ctx)
    with pytest.raises(ShapeError, match="divisible by 2"):
        model(torch.randn(2, 4, 7, 8), 1, ctx)
    with pytest.raises(ArgumentError, match="context is None"):
        model(x, 1, None)
    with pytest.raises(ShapeError, match=r"context must have shape \(2, M, 32\)"):
        model(x, 1, torch.randn(2, 3, 16))
    with pytest.raises(ShapeError, match=r"t must have shape \(B,\)"):
        model(x, torch.tensor([1, 2, 3]), ctx)
    with pytest.raises(ConfigError, match="levels must give one entry"):
        UNetConfig(levels=("cross",))
    with pytest.raises(ConfigError, match="divisible by norm_num_groups"):
        UNetConfig(block_out_channels=(30, 64))
