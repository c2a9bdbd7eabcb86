"""MAE: parity with HF ViTMAEForPreTraining (same noise), masking, loss, sin-cos positions."""

from __future__ import annotations

import pytest
import torch
from conftest import require
from parity import assert_close, assert_parity

from paperlab.errors import ArgumentError, ConfigError, ShapeError
from paperlab.hub import load_pretrained
from paperlab.vision.mae import (
    MAEConfig,
    MaskedAutoencoder,
    mae_loss,
    paste_reconstruction,
    random_masking,
)
from paperlab.vision.vit import patchify, sincos_2d_positions

pytestmark = pytest.mark.note("D4")

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
            image_size=16, patch_size=4, num_channels=3, decoder_hidden_size=16,
            decoder_num_hidden_layers=2, decoder_num_attention_heads=2,
            decoder_intermediate_size=24)
N = 16  # (16 / 4)^2 patches


def hf_table(dim: int, dtype=torch.float32) -> torch.Tensor:
    """HF's 2-D sin-cos builder with the half swap its MAE init applies (released layout)."""
    from transformers.models.vit_mae import modeling_vit_mae as hf

    table = hf.build_2d_sinusoidal_position_embedding(4, 4, dim, cls_token=True, dtype=dtype)
    half = dim // 2
    return torch.cat((table[:, half:], table[:, :half]), dim=-1)


def hf_folder(tmp_path, **extra):
    transformers = require("transformers")
    torch.manual_seed(0)
    ref = transformers.ViTMAEForPreTraining(transformers.ViTMAEConfig(**TINY, **extra)).eval()
    with torch.no_grad():  # make the zero-initialised biases and tokens non-trivial
        for name, p in ref.named_parameters():
            if "pos" not in name:
                p.add_(0.05 * torch.randn_like(p))
        # transformers 5.24 leaves both sin-cos tables at zero in a fresh model: set them
        ref.vit.embeddings.position_embeddings.copy_(hf_table(32)[None])
        ref.decoder.decoder_pos_embed.copy_(hf_table(16)[None])
    ref.save_pretrained(tmp_path)
    return ref


def inputs(dtype=torch.float32, b: int = 3):
    g = torch.Generator().manual_seed(1)
    return (torch.randn(b, 3, 16, 16, generator=g, dtype=dtype),
            torch.rand(b, N, generator=g, dtype=dtype))


@pytest.mark.parametrize("norm_pix_loss", [False, True])
@pytest.mark.parametrize(
    "dtype, attention",
    [(torch.float32, "sdpa"), (torch.float64, "sdpa"), (torch.float32, "eager")],
)
def test_parity_with_hf_vit_mae(tmp_path, norm_pix_loss, dtype, attention):
    """Same noise -> same mask, ids_restore, logits and loss (and input gradients). With
    HF's sdpa path the outputs agree bit for bit; eager (HF's written-out attention, softmax
    always in float32) within float32 tolerance."""
    ref = hf_folder(tmp_path, norm_pix_loss=norm_pix_loss, mask_ratio=0.75)
    if attention == "eager":
        ref = type(ref).from_pretrained(tmp_path, attn_implementation="eager")
    ref = ref.to(dtype).eval()
    ours = load_pretrained("vit-mae", tmp_path).to(dtype)
    assert ours.config.norm_pix_loss == norm_pix_loss and ours.config.mask_ratio == 0.75
    images, noise = inputs(dtype)

    def run_ours(x):
        out = ours(x, noise=noise)
        return out.loss, out.pred, out.mask, out.ids_restore.double(), out.latent

    def run_ref(x):
        out = ref(pixel_values=x, noise=noise)
        latent = ref.vit(pixel_values=x, noise=noise).last_hidden_state
        return out.loss, out.logits, out.mask, out.ids_restore.double(), latent

    assert_parity(run_ours, run_ref, [images.requires_grad_()])


def test_sincos_positions_equal_hf_tables():
    """Our float64 transcription against HF's builder (with its MAE half swap): float64 to
    1e-12, and the float32 tables bit for bit."""
    require("transformers")
    ours = sincos_2d_positions((4, 4), 32, class_token=True, dtype=torch.float64)
    assert_close(ours, hf_table(32, torch.float64), atol=1e-12, rtol=1e-12)
    for dim in (16, 32):
        assert torch.equal(sincos_2d_positions((4, 4), dim, class_token=True), hf_table(dim))
    # the layout: patch (r, c) -> [sin(c w) | cos(c w) | sin(r w) | cos(r w)], w_0 = 1
    r, c = 1, 2
    assert ours[1 + r * 4 + c, 0] == torch.sin(torch.tensor(2.0, dtype=torch.float64))
    assert ours[1 + r * 4 + c, 16] == torch.sin(torch.tensor(1.0, dtype=torch.float64))
    assert not ours[0].any()


def test_random_masking_keeps_the_lowest_noise_and_restores_order():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 10, 3, generator=g)
    noise = torch.rand(4, 10, generator=g)
    kept, mask, ids_restore = random_masking(x, 0.7, noise=noise)
    assert kept.shape == (4, 3, 3) and mask.sum(1).tolist() == [7.0] * 4
    for b in range(4):
        low = set(noise[b].argsort()[:3].tolist())
        assert set((mask[b] == 0).nonzero().flatten().tolist()) == low
        # visible tokens + anything for the masked ones, gathered by ids_restore = patch order
        filled = torch.cat((kept[b], torch.zeros(7, 3)))[ids_restore[b]]
        assert torch.equal(filled[mask[b] == 0], x[b][mask[b] == 0])
    again = random_masking(x, 0.7, generator=torch.Generator().manual_seed(5))
    same = random_masking(x, 0.7, generator=torch.Generator().manual_seed(5))
    assert all(torch.equal(a, b) for a, b in zip(again, same))
    # per-sample masks differ
    assert not torch.equal(again[1][0], again[1][1])


def test_loss_counts_masked_patches_only_and_normalises_per_patch():
    g = torch.Generator().manual_seed(0)
    target = torch.randn(2, 5, 4, generator=g, dtype=torch.float64)
    pred = torch.randn(2, 5, 4, generator=g, dtype=torch.float64)
    mask = torch.tensor([[1, 0, 0, 1, 0], [0, 0, 1, 0, 0]], dtype=torch.float64)
    perfect_on_masked = torch.where(mask.bool()[..., None], target, pred)
    assert mae_loss(perfect_on_masked, target, mask) == 0.0
    want = sum(((pred[b, n] - target[b, n]) ** 2).mean() for b, n in [(0, 0), (0, 3), (1, 2)]) / 3
    assert_close(mae_loss(pred, target, mask), want)
    t = target[0, 0]
    normed = (t - t.mean()) / (t.var(unbiased=True) + 1e-6).sqrt()
    m = torch.zeros(2, 5, dtype=torch.float64)
    m[0, 0] = 1
    assert_close(mae_loss(pred, target, m, True), ((pred[0, 0] - normed) ** 2).mean())
    with pytest.raises(ShapeError, match="mask must be"):
        mae_loss(pred, target, mask[:, :3])


def test_encoder_sees_only_visible_patches_and_reconstruction_pastes():
    model = MaskedAutoencoder(image_size=8, patch_size=2, dim=16, depth=1, num_heads=2,
                              mlp_dim=16, decoder_dim=8, decoder_depth=1, decoder_num_heads=2,
                              decoder_mlp_dim=8, mask_ratio=0.75)
    x = torch.rand(2, 1, 8, 8)
    out = model(x, generator=torch.Generator().manual_seed(0))
    assert out.latent.shape == (2, 1 + 4, 16) and out.pred.shape == (2, 16, 4)
    # changing a masked patch's pixels leaves the encoder's latent unchanged
    hidden = out.mask[0].bool().nonzero()[0].item()
    y = patchify(x, 2).clone()
    y[0, hidden] += 1.0
    from paperlab.vision.vit import unpatchify

    out2 = model(unpatchify(y, 2, 8, 1), generator=torch.Generator().manual_seed(0))
    assert torch.equal(out2.latent, out.latent)
    pasted = paste_reconstruction(x, out.pred, out.mask, 2)
    keep = (1 - out.mask).bool()
    assert torch.equal(patchify(pasted, 2)[keep], patchify(x, 2)[keep])
    assert torch.equal(patchify(pasted, 2)[~keep], out.pred[~keep])
    assert model.features(x).shape == (2, 16)


def test_configs_round_trip_through_json():
    cfg = MAEConfig(mask_ratio=0.6, norm_pix_loss=True, decoder_depth=3)
    assert MAEConfig.from_json(cfg.to_json()) == cfg
    assert cfg.replace_from_strings(["mask_ratio=0.9"]).mask_ratio == 0.9
    model = MaskedAutoencoder(cfg)
    assert model.encoder.config.position == "sincos-2d" and len(model.decoder_layers) == 3


def test_bad_arguments_raise_clear_errors():
    x = torch.randn(2, 10, 3)
    with pytest.raises(ArgumentError, match="mask_ratio"):
        random_masking(x, 1.0)
    with pytest.raises(ArgumentError, match="keeps no patch"):
        random_masking(x, 0.95)
    with pytest.raises(ShapeError, match=r"noise must be \(B, N\)"):
        random_masking(x, 0.5, noise=torch.rand(2, 9))
    with pytest.raises(ConfigError, match="position"):
        MAEConfig(position="rope-2d").check()
    with pytest.raises(ConfigError, match="decoder_dim"):
        MaskedAutoencoder(decoder_dim=30, decoder_num_heads=4)
    with pytest.raises(ShapeError, match="must be 8x8"):
        MaskedAutoencoder()(torch.rand(1, 1, 10, 10))


def test_importers_refuse_each_others_checkpoints(tmp_path):
    from paperlab.hub.base import WeightImportError

    hf_folder(tmp_path)
    with pytest.raises(WeightImportError, match="decoder.decoder_embed.bias"):
        load_pretrained("vit", tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ArgumentError, match="has no config.json"):
        load_pretrained("vit-mae", empty)
