"""``hub.load_pretrained`` on diffusers folders (note G1): ``save_pretrained`` of a tiny
``UNet2DConditionModel`` / ``AutoencoderKL`` loads as ours with the same output."""

from __future__ import annotations

import pytest
import torch
from conftest import require
from parity import assert_close

from paperlab.benchmarks.generative.unet import TINY
from paperlab.errors import ArgumentError
from paperlab.hub import load_pretrained

pytestmark = pytest.mark.note("G1", reference="diffusers save_pretrained folders")


def test_unet_folder(tmp_path):
    diffusers = require("diffusers")
    torch.manual_seed(0)
    ref = diffusers.UNet2DConditionModel(**TINY).eval()
    ref.save_pretrained(tmp_path, safe_serialization=True)
    ours = load_pretrained("diffusers-unet", tmp_path).eval()
    x, ctx, t = torch.randn(1, 4, 8, 8), torch.randn(1, 3, 32), torch.tensor([10])
    with torch.no_grad():
        assert_close(ours(x, t, ctx), ref(x, t, encoder_hidden_states=ctx).sample,
                     rtol=0, atol=2e-5, what="noise prediction after load_pretrained")


def test_autoencoder_folder(tmp_path):
    diffusers = require("diffusers")
    torch.manual_seed(0)
    ref = diffusers.AutoencoderKL(
        in_channels=3, out_channels=3, block_out_channels=(8, 16), latent_channels=2,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        norm_num_groups=4, layers_per_block=1).eval()
    ref.save_pretrained(tmp_path, safe_serialization=True)
    ours = load_pretrained("diffusers-autoencoder-kl", tmp_path).eval()
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        assert_close(ours.encode(x).mean, ref.encode(x).latent_dist.mean,
                     rtol=0, atol=2e-5, what="latent mean after load_pretrained")


def test_a_hf_folder_is_not_a_diffusers_folder(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ArgumentError, match="diffusion_pytorch_model.safetensors"):
        load_pretrained("diffusers-unet", tmp_path)
