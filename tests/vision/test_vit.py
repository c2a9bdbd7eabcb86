"""ViT: parity with HF ViTModel / ViTForImageClassification via our importer; patchify; errors."""

from __future__ import annotations

import pytest
import torch
from conftest import require
from hypothesis import given, settings
from hypothesis import strategies as st
from parity import assert_close, assert_parity

from paperlab.errors import ArgumentTypeError, ConfigError, ShapeError
from paperlab.hub import load_pretrained
from paperlab.hub.base import WeightImportError
from paperlab.vision.vit import (
    PatchEmbedding,
    PatchRotary2D,
    VisionTransformer,
    ViTConfig,
    patchify,
    unpatchify,
)

pytestmark = pytest.mark.note("D3")

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
            image_size=16, patch_size=4, num_channels=3)


def hf_folder(tmp_path, cls_name: str = "ViTModel", **extra):
    transformers = require("transformers")
    torch.manual_seed(0)
    cfg = transformers.ViTConfig(**TINY, **extra)
    ref = getattr(transformers, cls_name)(cfg).eval()
    with torch.no_grad():  # HF zero-initialises some biases; make every tensor non-trivial
        for p in ref.parameters():
            p.add_(0.05 * torch.randn_like(p))
    ref.save_pretrained(tmp_path)
    return ref


def images(b: int = 3, dtype=torch.float32, size: int = 16) -> torch.Tensor:
    return torch.randn(b, 3, size, size, generator=torch.Generator().manual_seed(1), dtype=dtype)


@pytest.mark.parametrize(
    "dtype, attention",
    [(torch.float32, "sdpa"), (torch.float64, "sdpa"), (torch.float32, "eager")],
)
def test_parity_with_hf_vit_model(tmp_path, dtype, attention):
    """sdpa: HF runs the same kernels as ours (max error 0 here); eager: HF's written-out
    attention (max error ~5e-7 in float32). HF's eager softmax always runs in float32
    (``softmax(..., dtype=torch.float32)``), so it is no float64 reference (3e-8 there)."""
    ref = hf_folder(tmp_path)
    if attention == "eager":
        ref = type(ref).from_pretrained(tmp_path, attn_implementation="eager")
    ref = ref.to(dtype).eval()
    ours = load_pretrained("vit", tmp_path).to(dtype)
    assert ours.config.pool_projection and ours.config.norm_eps == 1e-12

    def run_ours(x):
        out = ours(x)
        return out.hidden, out.pooled

    def run_ref(x):
        out = ref(pixel_values=x)
        return out.last_hidden_state, out.pooler_output

    assert_parity(run_ours, run_ref, [images(dtype=dtype).requires_grad_()])


def test_parity_with_hf_vit_classifier(tmp_path):
    ref = hf_folder(tmp_path, "ViTForImageClassification", num_labels=5)
    ours = load_pretrained("vit", tmp_path)
    assert ours.config.num_classes == 5 and not ours.config.pool_projection
    x = images()
    with torch.no_grad():
        assert_close(ours(x).logits, ref(pixel_values=x).logits)


def test_importer_names_missing_and_unexpected_tensors(tmp_path):
    hf_folder(tmp_path)
    from safetensors.torch import load_file, save_file

    state = load_file(str(tmp_path / "model.safetensors"))
    state.pop("layernorm.weight")
    state["embeddings.extra.weight"] = torch.zeros(2)
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(WeightImportError, match="embeddings.extra.weight"):
        load_pretrained("vit", tmp_path)
    del state["embeddings.extra.weight"]
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(WeightImportError, match=r"missing \(2\): norm.bias|missing.*norm.weight"):
        load_pretrained("vit", tmp_path)


@settings(max_examples=30, deadline=None)
@given(
    b=st.integers(1, 3), c=st.integers(1, 3), p=st.integers(1, 4),
    gh=st.integers(1, 4), gw=st.integers(1, 4),
)
def test_patchify_unpatchify_are_inverse(b, c, p, gh, gw):
    x = torch.randn(b, c, gh * p, gw * p)
    patches = patchify(x, p)
    assert patches.shape == (b, gh * gw, p * p * c)
    assert torch.equal(unpatchify(patches, p, (gh * p, gw * p), c), x)
    assert torch.equal(patchify(unpatchify(patches, p, (gh * p, gw * p), c), p), patches)


def test_patchify_layout_is_maes_and_matches_the_conv():
    """Patch n = grid cell (n // gw, n % gw), pixels ordered (row, col, channel); the stride-p
    conv equals patchify followed by a Linear with the permuted kernel."""
    x = torch.arange(2 * 3 * 4 * 6, dtype=torch.float64).reshape(2, 3, 4, 6)
    patches = patchify(x, 2)
    n = 1 * 3 + 2  # row 1, column 2 of the 2 x 3 grid
    want = x[1, :, 2:4, 4:6].permute(1, 2, 0).reshape(-1)
    assert torch.equal(patches[1, n], want)
    embed = PatchEmbedding((4, 6), 2, 3, 5).double()
    w = embed.proj.weight.permute(0, 2, 3, 1).reshape(5, -1)
    assert_close(embed(x), patches @ w.T + embed.proj.bias)


def test_bad_image_sizes_and_types_raise_clear_errors():
    model = VisionTransformer(image_size=8, patch_size=2, in_channels=1, dim=16, depth=1,
                              num_heads=2, mlp_dim=16)
    with pytest.raises(ShapeError, match="must be 8x8"):
        model(torch.randn(2, 1, 10, 10))
    with pytest.raises(ShapeError, match="C=1 channels"):
        model(torch.randn(2, 3, 8, 8))
    with pytest.raises(ShapeError, match=r"\(B, C, H, W\)"):
        model(torch.randn(1, 8, 8))
    with pytest.raises(ArgumentTypeError, match="floating point"):
        model(torch.zeros(2, 1, 8, 8, dtype=torch.long))
    with pytest.raises(ShapeError, match="not divisible by patch_size=3"):
        patchify(torch.randn(1, 1, 8, 8), 3)
    with pytest.raises(ShapeError, match=r"\(B, 4, 4\)"):
        unpatchify(torch.randn(1, 5, 4), 2, 4, 1)
    with pytest.raises(ConfigError, match="not divisible by patch_size=3"):
        ViTConfig(image_size=8, patch_size=3).check()
    with pytest.raises(ConfigError, match="position must be one of"):
        VisionTransformer(position="sinusoidal")
    with pytest.raises(ConfigError, match="class_token"):
        VisionTransformer(class_token=False, pool="cls")
    with pytest.raises(ConfigError, match="activation"):
        VisionTransformer(activation="swish")


@pytest.mark.parametrize("position", ["learned", "sincos-2d", "rope-2d", "none"])
@pytest.mark.parametrize("class_token", [True, False])
def test_configurations_build_run_and_train(position, class_token):
    torch.manual_seed(0)
    model = VisionTransformer(dim=16, depth=1, num_heads=2, mlp_dim=16, position=position,
                              class_token=class_token, pool="cls" if class_token else "mean",
                              num_classes=3)
    out = model(torch.randn(2, 1, 8, 8))
    assert out.hidden.shape == (2, 16 + class_token, 16) and out.logits.shape == (2, 3)
    out.logits.sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_rope_2d_scores_depend_on_grid_offsets_only_and_prefix_passes():
    rope = PatchRotary2D(8, (3, 4), prefix=1)
    g = torch.Generator().manual_seed(0)
    q0, k0 = torch.randn(8, generator=g, dtype=torch.float64), torch.randn(8, generator=g,
                                                                         dtype=torch.float64)
    q, k = q0.expand(1, 2, 13, 8), k0.expand(1, 2, 13, 8)
    rq, rk = rope.rotate(q), rope.rotate(k)
    assert torch.equal(rq[..., 0, :], q[..., 0, :])  # the class token is not rotated
    scores = (rq[0, 0, 1:] @ rk[0, 0, 1:].T)
    cells = [(r, c) for r in range(3) for c in range(4)]
    by_offset: dict[tuple[int, int], float] = {}
    for i, (ri, ci) in enumerate(cells):
        for j, (rj, cj) in enumerate(cells):
            key = (ri - rj, ci - cj)
            ref = by_offset.setdefault(key, float(scores[i, j]))
            assert abs(float(scores[i, j]) - ref) < 1e-12
    assert len(set(round(v, 8) for v in by_offset.values())) > 10  # positions do matter
    with pytest.raises(ShapeError, match="prefix"):
        rope.rotate(torch.randn(1, 2, 12, 8))


def test_bfloat16_forward_is_finite_and_near_float32():
    torch.manual_seed(0)
    model = VisionTransformer(dim=32, depth=2, num_heads=4, mlp_dim=64, num_classes=10).eval()
    x = torch.rand(4, 1, 8, 8)
    with torch.no_grad():
        ref = model(x).logits
        low = model.to(torch.bfloat16)(x.to(torch.bfloat16)).logits
    assert low.dtype == torch.bfloat16 and torch.isfinite(low).all()
    assert (low.float() - ref).abs().max() < 0.05 * ref.abs().max() + 0.05
