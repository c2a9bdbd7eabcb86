"""Latent-diffusion benchmarks (note G1): our conditional UNet against diffusers'
``UNet2DConditionModel`` with the same tiny config and weights, and a 50-step DDIM sampling
loop with classifier-free guidance, ours (``DDIMSampler`` + ``guided_output``) against the
loop of diffusers' pipelines (``DDIMScheduler.step`` on a doubled-batch UNet call).

Config (the parity test's): block_out_channels (32, 64), layers_per_block 1,
CrossAttnDownBlock2D / DownBlock2D, UpBlock2D / CrossAttnUpBlock2D, cross_attention_dim 32,
8 heads, 4 latent channels; batch 2, a context of 7 tokens; forward without grad, float32.
"""

from __future__ import annotations

import torch

from paperlab.benchmarks.base import BenchContext, BenchRow, compare
from paperlab.errors import require
from paperlab.generative.samplers import DDIMSampler, guided_output
from paperlab.generative.schedules import NoiseSchedule
from paperlab.registry import export_benchmark

TINY = dict(
    sample_size=8,
    in_channels=4,
    out_channels=4,
    block_out_channels=(32, 64),
    layers_per_block=1,
    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=32,
    attention_head_dim=8,
    norm_num_groups=8,
)


def _pair(device: str, purpose: str):
    """(diffusers module, its tiny UNet, ours with the same weights), both on ``device``."""
    diffusers = require("diffusers", extra="test", purpose=purpose)
    from paperlab.hub.diffusers import unet_from_diffusers

    torch.manual_seed(0)
    ref = diffusers.UNet2DConditionModel(**TINY).eval()
    ours = unet_from_diffusers(dict(ref.config), ref.state_dict()).eval()
    return diffusers, ref.to(device), ours.to(device)


@export_benchmark("unet-forward", group="generative", note="G1")
def bench_unet_forward(ctx: BenchContext) -> list[BenchRow]:
    """Our UNet vs diffusers' UNet2DConditionModel forward, same weights, latents S x S."""
    _, ref, ours = _pair(ctx.device, "benchmark 'unet-forward'")
    sizes = [8, 16] if ctx.quick else [8, 16, 32, 64]
    g = torch.Generator().manual_seed(1)
    rows = []
    for s in sizes:
        x = torch.randn(2, 4, s, s, generator=g).to(ctx.device)
        context = torch.randn(2, 7, 32, generator=g).to(ctx.device)
        t = torch.tensor([10, 500], device=ctx.device)

        def run_ours(x=x, context=context, t=t):
            with torch.no_grad():
                return ours(x, t, context)

        def run_ref(x=x, context=context, t=t):
            with torch.no_grad():
                return ref(x, t, encoder_hidden_states=context).sample

        rows.append(
            compare(ctx, "UNet forward (batch 2, 7 context tokens) float32", f"{s}x{s}",
                    run_ours, run_ref, "diffusers UNet2DConditionModel")
        )  # fmt: skip
    return rows


@export_benchmark("ddim-loop", group="generative", note="G1")
def bench_ddim_loop(ctx: BenchContext) -> list[BenchRow]:
    """50 DDIM steps with guidance scale 7.5 (one doubled-batch UNet call per step), ours vs
    diffusers' pipeline loop, same UNet weights and starting noise."""
    diffusers, ref, ours = _pair(ctx.device, "benchmark 'ddim-loop'")
    steps = 10 if ctx.quick else 50
    size = 8 if ctx.quick else 16
    schedule = NoiseSchedule(1000, "scaled_linear", 0.00085, 0.012)
    sampler = DDIMSampler(schedule, steps)
    scheduler = diffusers.DDIMScheduler(
        beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False,
        set_alpha_to_one=True,
    )  # fmt: skip
    g = torch.Generator().manual_seed(2)
    x_T = torch.randn(2, 4, size, size, generator=g).to(ctx.device)
    cond = torch.randn(2, 7, 32, generator=g).to(ctx.device)
    null = torch.zeros(1, 7, 32, device=ctx.device)
    scale = 7.5

    def run_ours():
        with torch.no_grad():
            x = x_T
            for t in sampler.timesteps.tolist():
                out = guided_output(ours, x, t, cond, null, scale)
                x = sampler.step(out, t, x).prev_sample
            return x

    def run_ref():
        with torch.no_grad():
            scheduler.set_timesteps(steps)
            x = x_T
            context = torch.cat([null.expand_as(cond), cond])
            for t in scheduler.timesteps:
                eps = ref(torch.cat([x, x]), t, encoder_hidden_states=context).sample
                uncond, c = eps.chunk(2)
                x = scheduler.step(uncond + scale * (c - uncond), t, x).prev_sample
            return x

    return [
        compare(ctx, f"DDIM {steps} steps, guidance 7.5, batch 2 float32", f"{size}x{size}",
                run_ours, run_ref, "diffusers DDIMScheduler pipeline loop")
    ]  # fmt: skip
