"""Latent diffusion (note G1): encode -> diffuse -> decode, classifier-free guidance in one
batched forward equal to two separate forwards, the sampling loop equal to the samplers'
steps, and the errors that name the argument."""

from __future__ import annotations

import pytest
import torch

from paperlab.errors import ArgumentError, ConfigError, ShapeError
from paperlab.generative.autoencoder import AutoencoderConfig, AutoencoderKL
from paperlab.generative.latent_diffusion import ClassEmbedding, LatentDiffusion, PromptEncoder
from paperlab.generative.samplers import DDIMSampler
from paperlab.generative.schedules import NoiseSchedule
from paperlab.generative.unet import UNet, UNetConfig
from paperlab.language.tokenizer import encode_batch, word_level_tokenizer

pytestmark = pytest.mark.note("G1")


def make(condition: str = "class", cond_drop_prob: float = 0.2, T: int = 20) -> LatentDiffusion:
    torch.manual_seed(0)
    ae = AutoencoderKL(AutoencoderConfig(1, 1, (8, 16), latent_channels=2, norm_num_groups=4))
    unet = UNet(UNetConfig(2, 2, (16,), ("cross",), cross_attention_dim=8, num_heads=2,
                           norm_num_groups=4))
    tok = None
    if condition == "class":
        cond = ClassEmbedding(10, 8)
    elif condition == "prompt":
        tok = word_level_tokenizer(["a", "red", "blue", "digit"])
        null = encode_batch(tok, [""], 6)[0][0].tolist()
        cond = PromptEncoder(tok.get_vocab_size(), 8, 6, depth=1, num_heads=2, null_ids=null)
    else:
        cond = None
    return LatentDiffusion(ae, unet, NoiseSchedule(T), cond, image_size=8,
                           cond_drop_prob=cond_drop_prob, tokenizer=tok).eval()


def test_shapes_encode_decode_and_scaling_factor():
    model = make()
    x = torch.rand(5, 1, 8, 8) * 2 - 1
    s = model.fit_scaling_factor(x)
    z = model.encode(x)
    assert model.latent_shape == (2, 4, 4) and z.shape == (5, 2, 4, 4)
    assert abs(float(z.std()) - 1.0) < 1e-4  # unit variance after scaling
    assert float(model.scaling_factor) == pytest.approx(s)
    assert model.decode(z).shape == (5, 1, 8, 8)
    assert float(model.decode(z).abs().max()) <= 1.0


def test_loss_trains_only_the_diffusion_stage():
    model = make().train()
    x, y = torch.rand(4, 1, 8, 8) * 2 - 1, torch.tensor([0, 3, 5, 9])
    loss = model.loss(x, y, torch.Generator().manual_seed(0))
    loss.backward()
    assert loss.dim() == 0 and torch.isfinite(loss)
    assert all(p.grad is None for p in model.autoencoder.parameters())
    assert model.unet.conv_in.weight.grad is not None
    assert model.condition.embedding.weight.grad is not None


@pytest.mark.parametrize("condition", ["class", "prompt"])
def test_guidance_is_one_batched_forward_equal_to_two(condition):
    """generate's guided chain equals a DDIM loop written with two separate forwards."""
    model = make(condition)
    cond = (torch.tensor([1, 7]) if condition == "class"
            else model.encode_prompts(["a red", "digit"]))
    z = torch.randn(2, 2, 4, 4, generator=torch.Generator().manual_seed(1))
    kw = {"labels": cond} if condition == "class" else {"prompt": ["a red", "digit"]}
    ours = model.generate(**kw, steps=5, guidance_scale=3.0, latents=z.clone(),
                          return_latents=True)
    sampler = DDIMSampler(model.schedule, 5)
    x = z.clone()
    null = model.condition.null().expand_as(cond)
    with torch.no_grad():
        for t in sampler.timesteps.tolist():
            tt = torch.full((2,), t)
            e_c = model.denoise(x, tt, cond)
            e_u = model.denoise(x, tt, null)
            x = sampler.step(e_u + 3.0 * (e_c - e_u), t, x).prev_sample
    torch.testing.assert_close(ours, x, atol=1e-5, rtol=1e-5)


def test_generate_unconditional_ddpm_and_determinism():
    model = make("none")
    a = model.generate(num_images=3, steps=4, generator=torch.Generator().manual_seed(2))
    b = model.generate(num_images=3, steps=4, generator=torch.Generator().manual_seed(2))
    assert a.shape == (3, 1, 8, 8) and torch.equal(a, b)
    c = make("class").generate(labels=[2, 4], steps=20, sampler="ddpm",
                               generator=torch.Generator().manual_seed(0))
    assert c.shape == (2, 1, 8, 8) and torch.isfinite(c).all()


def test_prompt_padding_and_null_prompt():
    model = make("prompt")
    ids = model.encode_prompts(["a red digit", ""])
    assert ids.shape == (2, 6)
    assert torch.equal(ids[1], model.condition.null())
    ctx = model.context(ids, 2)
    assert ctx.shape == (2, 6, 8) and torch.isfinite(ctx).all()


def test_bad_input_names_the_argument():
    cls, uncond, prompt = make("class"), make("none"), make("prompt")
    with pytest.raises(ArgumentError, match="prompt given.*unconditional"):
        uncond.generate("a red digit", steps=2)
    with pytest.raises(ArgumentError, match="prompt given.*class-conditioned"):
        cls.generate("a red digit", steps=2)
    with pytest.raises(ArgumentError, match="labels given.*prompt-conditioned"):
        prompt.generate(labels=[1], steps=2)
    with pytest.raises(ArgumentError, match="pass labels"):
        cls.generate(steps=2)
    no_free = make("class", cond_drop_prob=0.0)
    with pytest.raises(ArgumentError, match="guidance_scale.*condition-free.*cond_drop_prob"):
        no_free.generate(labels=[1], steps=2, guidance_scale=3.0)
    no_free.generate(labels=[1], steps=2, guidance_scale=1.0)  # unguided is fine
    with pytest.raises(ArgumentError, match="guidance_scale.*unconditional"):
        uncond.generate(num_images=1, steps=2, guidance_scale=2.0)
    with pytest.raises(ArgumentError, match="steps must be <= the 20 timesteps"):
        cls.generate(labels=[1], steps=21)
    with pytest.raises(ShapeError, match=r"latents must have shape \(B, 2, 4, 4\)"):
        cls.generate(labels=[1], steps=2, latents=torch.randn(1, 2, 8, 8))
    with pytest.raises(ShapeError, match="latents must have the batch size"):
        cls.generate(labels=[1, 2], steps=2, latents=torch.randn(3, 2, 4, 4))
    with pytest.raises(ShapeError, match="latents"):
        cls.decode(torch.randn(1, 4, 4, 4))
    with pytest.raises(ArgumentError, match="labels must be class ids"):
        cls.generate(labels=[11], steps=2)
    with pytest.raises(ShapeError, match="images must have shape"):
        cls.encode(torch.randn(2, 3, 8, 8))
    with pytest.raises(ArgumentError, match="sampler must be one of"):
        cls.generate(labels=[1], steps=2, sampler="euler")
    with pytest.raises(ArgumentError, match="condition is None"):
        cls.loss(torch.zeros(2, 1, 8, 8))


def test_config_mismatch_is_a_config_error():
    ae = AutoencoderKL(AutoencoderConfig(1, 1, (8, 16), latent_channels=2, norm_num_groups=4))
    unet = UNet(UNetConfig(4, 4, (16,), ("cross",), cross_attention_dim=8, num_heads=2,
                           norm_num_groups=4))
    with pytest.raises(ConfigError, match="latent channels"):
        LatentDiffusion(ae, unet, NoiseSchedule(10))
    with pytest.raises(ConfigError, match="image_size"):
        LatentDiffusion(ae, UNet(UNetConfig(2, 2, (16,), ("cross",), cross_attention_dim=8,
                                            num_heads=2, norm_num_groups=4)),
                        NoiseSchedule(10), image_size=7)


def test_v_prediction_trains_on_velocity_and_generates():
    model = make("class")
    model.prediction_type = "v_prediction"
    seen = {}
    original = model.schedule.training_target

    def spy(x0, noise, t, prediction_type):
        seen.update(x0=x0, noise=noise, t=t, kind=prediction_type)
        seen["target"] = original(x0, noise, t, prediction_type)
        return seen["target"]

    model.schedule.training_target = spy
    images = torch.rand(4, 1, 8, 8) * 2 - 1
    loss = model.loss(images, torch.tensor([0, 1, 2, 3]), torch.Generator().manual_seed(0))
    assert torch.isfinite(loss) and seen["kind"] == "v_prediction"
    ab = model.schedule.alphas_cumprod[seen["t"].cpu()].view(-1, 1, 1, 1).float()
    want = ab.sqrt() * seen["noise"] - (1 - ab).sqrt() * seen["x0"]
    torch.testing.assert_close(seen["target"], want)
    for sampler in ("ddim", "ddpm"):
        out = model.generate(labels=[1, 2], steps=20, sampler=sampler, clip_sample=True,
                             guidance_scale=2.0, generator=torch.Generator().manual_seed(1))
        assert out.shape == (2, 1, 8, 8) and torch.isfinite(out).all()
    assert model.sampler(5).prediction_type == "v_prediction"
    with pytest.raises(ConfigError, match="prediction_type"):
        LatentDiffusion(model.autoencoder, model.unet, model.schedule, None,
                        prediction_type="velocity")
    from paperlab.recipes.ldm import LDMConfig, build_ldm

    cfg = LDMConfig(condition="class", prediction_type="v_prediction", unet_channels=(16,),
                    unet_groups=4, context_dim=8, train_timesteps=20)
    cfg.validate()
    assert build_ldm(cfg, model.autoencoder).prediction_type == "v_prediction"
    with pytest.raises(ConfigError, match="prediction_type"):
        LDMConfig(prediction_type="velocity").validate()
