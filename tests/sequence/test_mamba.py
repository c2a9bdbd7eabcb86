"""Mamba (note C3): the selective scan (parallel == sequential == a float64 loop; gradcheck),
the block and LM against HF transformers' slow path with copied weights, and recurrent
step-by-step inference == the parallel forward."""

from __future__ import annotations

import pytest
import torch
from conftest import require
from parity import assert_close

import paperlab
from paperlab.errors import ArgumentError, ArgumentTypeError, ConfigError, ShapeError
from paperlab.sequence.mamba import (
    MambaBlock,
    MambaConfig,
    MambaLM,
    config_from_hf,
    hf_mamba_name,
    load_hf_mamba_state_dict,
)
from paperlab.sequence.selective_scan import (
    selective_scan,
    selective_scan_parallel,
    selective_scan_sequential,
)

pytestmark = pytest.mark.note("C3")

# ----------------------------------------------------------------------------- reference


def scan_loop_f64(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """The selective scan transcribed from the paper's recurrence, float64, one step a time."""
    u, delta, A, B, C = (t.double() for t in (u, delta, A, B, C))
    if delta_bias is not None:
        delta = delta + delta_bias.double()[:, None]
    if delta_softplus:
        delta = torch.log1p(torch.exp(delta))
    batch, dim, length = u.shape
    x = torch.zeros(batch, dim, A.shape[1], dtype=torch.float64)
    ys = []
    for t in range(length):
        B_t = B[:, None, :, t] if B.dim() == 3 else B[None]  # (b, 1, N) or (1, d, N)
        C_t = C[:, None, :, t] if C.dim() == 3 else C[None]
        x = torch.exp(delta[:, :, t, None] * A[None]) * x + delta[:, :, t, None] * B_t * u[
            :, :, t, None
        ]
        ys.append((x * C_t).sum(-1))
    y = torch.stack(ys, dim=-1)
    if D is not None:
        y = y + D.double()[:, None] * u
    if z is not None:
        y = y * z.double() * torch.sigmoid(z.double())
    return y, x


def scan_inputs(b=2, d=6, length=9, n=4, *, selective=True, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)

    def r(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype)

    u, delta = r(b, d, length), r(b, d, length)
    A = -(torch.rand(d, n, generator=g, dtype=torch.float64) * 4 + 0.1).to(dtype)
    B = r(b, n, length) if selective else r(d, n)
    C = r(b, n, length) if selective else r(d, n)
    extras = dict(D=r(d), z=r(b, d, length), delta_bias=r(d))
    return (u, delta, A, B, C), extras


def selective_scan_chunked(*args, **kwargs):
    """The parallel scan cut into chunks of 3 steps (state carried across chunks)."""
    return selective_scan_parallel(*args, **kwargs, chunk_size=3)


SCANS = [selective_scan_sequential, selective_scan_parallel, selective_scan_chunked]


# ----------------------------------------------------------------------------- the scan


@pytest.mark.parametrize("length", [1, 2, 3, 8, 33, 64])
@pytest.mark.parametrize("selective", [True, False])
def test_scans_agree_with_float64_loop(length, selective):
    args, ex = scan_inputs(length=length, selective=selective, seed=length)
    ref, ref_state = scan_loop_f64(*args, **ex, delta_softplus=True)
    outs = {}
    for fn in SCANS:
        out, state = fn(*args, **ex, delta_softplus=True, return_last_state=True)
        assert out.dtype == torch.float32 and state.shape == (2, 6, 4)
        assert_close(out, ref, atol=1e-5, rtol=1e-5, what=fn.__name__)
        assert_close(state, ref_state, atol=1e-5, rtol=1e-5, what=f"{fn.__name__} state")
        outs[fn] = out
        # float64 in, float64 out, at float64 precision
        out64, state64 = fn(*(a.double() for a in args), **{k: v.double() for k, v in ex.items()},
                            delta_softplus=True, return_last_state=True)
        assert out64.dtype == torch.float64
        assert_close(out64, ref, what=f"{fn.__name__} float64")
        assert_close(state64, ref_state, what=f"{fn.__name__} float64 state")
    for fn in SCANS[1:]:
        assert_close(outs[fn], outs[SCANS[0]], what=f"{fn.__name__} vs sequential")


@pytest.mark.parametrize(
    "options",
    [{}, {"D": True}, {"z": True}, {"delta_bias": True}, {"delta_softplus": True},
     {"D": True, "z": True, "delta_bias": True, "delta_softplus": True}],
)
def test_each_option_matches_reference(options):
    args, ex = scan_inputs(length=12, seed=3)
    if not options.get("delta_softplus"):  # keep delta >= 0 so the system stays stable
        args = (args[0], args[1].abs()) + args[2:]
    kw = {k: ex[k] for k in ("D", "z", "delta_bias") if options.get(k)}
    soft = bool(options.get("delta_softplus"))
    ref, _ = scan_loop_f64(*args, **kw, delta_softplus=soft)
    for fn in SCANS:
        assert_close(fn(*args, **kw, delta_softplus=soft), ref, atol=1e-5, rtol=1e-5)


def test_dispatch_default_is_parallel_and_methods_agree():
    args, ex = scan_inputs(length=20, seed=4)
    out = selective_scan(*args, **ex, delta_softplus=True)
    assert_close(out, selective_scan_parallel(*args, **ex, delta_softplus=True), atol=0, rtol=0)
    seq = selective_scan(*args, **ex, delta_softplus=True, method="sequential")
    assert_close(out, seq)
    with pytest.raises(ArgumentError, match="method"):
        selective_scan(*args, method="fast")
    with pytest.raises(ArgumentError, match="chunk_size"):
        selective_scan_parallel(*args, chunk_size=0)


@pytest.mark.parametrize("fn", SCANS)
def test_initial_state_continues_a_split_sequence(fn):
    args, ex = scan_inputs(length=17, seed=5)
    full, last = fn(*args, **ex, delta_softplus=True, return_last_state=True)
    u, delta, A, B, C = args
    first, mid = fn(u[..., :9], delta[..., :9], A, B[..., :9], C[..., :9], ex["D"],
                    ex["z"][..., :9], delta_bias=ex["delta_bias"], delta_softplus=True,
                    return_last_state=True)
    second, end = fn(u[..., 9:], delta[..., 9:], A, B[..., 9:], C[..., 9:], ex["D"],
                     ex["z"][..., 9:], delta_bias=ex["delta_bias"], delta_softplus=True,
                     return_last_state=True, initial_state=mid)
    assert_close(torch.cat((first, second), -1), full)
    assert_close(end, last)


def test_half_precision_is_scanned_in_float32():
    args, ex = scan_inputs(length=10, seed=6)
    ref = selective_scan(*args, **ex, delta_softplus=True)
    out = selective_scan(*(a.bfloat16() for a in args), **ex, delta_softplus=True)
    assert out.dtype == torch.bfloat16
    assert_close(out.float(), ref, atol=0.1, rtol=0.05, what="bf16 inputs")


@pytest.mark.parametrize("fn", SCANS)
@pytest.mark.parametrize("selective", [True, False])
def test_gradcheck(fn, selective):
    args, ex = scan_inputs(b=1, d=2, length=5, n=3, selective=selective, dtype=torch.float64)
    names = ["u", "delta", "A", "B", "C", "D", "z", "delta_bias"]
    leaves = [t.clone().requires_grad_() for t in (*args, ex["D"], ex["z"], ex["delta_bias"])]

    def f(u, delta, A, B, C, D, z, delta_bias):
        out, last = fn(u, delta, A, B, C, D, z, delta_bias=delta_bias, delta_softplus=True,
                       return_last_state=True)
        return out, last

    assert torch.autograd.gradcheck(f, leaves, eps=1e-6, atol=1e-7), names


# ----------------------------------------------------------------------------- bad input


def test_bad_scan_input_names_the_argument():
    (u, delta, A, B, C), ex = scan_inputs()
    cases = [
        ((u[0], delta, A, B, C), {}, ShapeError, "u must have shape"),
        ((u, delta[..., :-1], A, B, C), {}, ShapeError, "delta must have shape"),
        ((u, delta, A[:-1], B, C), {}, ShapeError, "A must have shape"),
        ((u, delta, A[:, :0], B[:, :0], C[:, :0]), {}, ShapeError, "at least one state"),
        ((u, delta, A, B[:, :-1], C), {}, ShapeError, "B must have shape"),
        ((u, delta, A, B, C[..., :-1]), {}, ShapeError, "C must have shape"),
        ((u, delta, A, B, C[0, 0]), {}, ShapeError, "C must have shape"),
        ((u, delta, A, B, C), {"D": ex["D"][:-1]}, ShapeError, "D must have shape"),
        ((u, delta, A, B, C), {"z": ex["z"][:1]}, ShapeError, "z must have shape"),
        ((u, delta, A, B, C), {"delta_bias": ex["delta_bias"][None]}, ShapeError, "delta_bias"),
        ((u, delta, A, B, C), {"initial_state": torch.zeros(2, 6, 5)}, ShapeError,
         "initial_state"),
        ((u[..., :0], delta[..., :0], A, B[..., :0], C[..., :0]), {}, ShapeError,
         "at least one time step"),
        ((u.tolist(), delta, A, B, C), {}, ArgumentTypeError, "u must be a torch.Tensor"),
        ((u, delta, A.to(torch.complex64), B, C), {}, ArgumentTypeError, "A must be real"),
        ((u, delta.long(), A, B, C), {}, ArgumentTypeError, "delta must be a real floating"),
    ]
    for args, kw, err, msg in cases:
        for fn in SCANS:
            with pytest.raises(err, match=msg):
                fn(*args, **kw)


def test_config_validation_and_round_trip():
    with pytest.raises(ConfigError, match="d_state"):
        MambaConfig(d_state=0)
    with pytest.raises(ConfigError, match="d_state"):
        MambaLM(d_state=-1)
    with pytest.raises(ConfigError, match="dt_rank"):
        MambaConfig(dt_rank="big")
    with pytest.raises(ConfigError, match="scan"):
        MambaConfig(scan="fast")
    with pytest.raises(ConfigError, match="no field"):
        MambaLM(d_modle=8)
    assert MambaConfig(d_model=33).resolved_dt_rank == 3
    assert MambaConfig(dt_rank="5").resolved_dt_rank == 5
    cfg = MambaConfig(d_model=48, selective=False).replace_from_strings(["dt_rank=7"])
    assert MambaConfig.from_json(cfg.to_json()) == cfg and cfg.dt_rank == 7
    assert cfg.d_inner == 96


# ----------------------------------------------------------------------------- HF parity


def _hf_model(transformers, layers=2, seed=0):
    hc = transformers.MambaConfig(
        vocab_size=50, hidden_size=32, state_size=8, num_hidden_layers=layers, expand=2,
        conv_kernel=4, use_mambapy=False, use_associative_scan=False,
    )  # fmt: skip
    torch.manual_seed(seed)
    hf = transformers.MambaForCausalLM(hc).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # make every weight matter: perturb HF's gentle initialisation
        for name, p in hf.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if name.endswith("A_log"):
                p.copy_(torch.log(torch.rand(p.shape, generator=g) * 6 + 0.2))
            elif name.endswith("dt_proj.bias"):
                p.copy_(noise - 1.5)
            else:
                p.add_(0.3 * noise * p.detach().std().clamp_min(0.1))
    return hc, hf


@pytest.fixture(scope="module")
def hf_pair():
    transformers = require("transformers")
    hc, hf = _hf_model(transformers)
    ours = MambaLM(config_from_hf(hc)).eval()
    load_hf_mamba_state_dict(ours, hf.state_dict())
    return transformers, hc, hf, ours


def test_lm_logits_and_gradients_match_hf(hf_pair):
    _, _, hf, ours = hf_pair
    tokens = torch.randint(0, 50, (2, 23), generator=torch.Generator().manual_seed(7))
    ref = hf(tokens).logits
    out = ours(tokens)
    err = assert_close(out, ref, atol=1e-5, rtol=1e-5, what="logits")
    assert err < 1e-5
    g = torch.randn(ref.shape, generator=torch.Generator().manual_seed(8))
    hf.zero_grad()
    ours.zero_grad()
    (ref * g).sum().backward()
    (out * g).sum().backward()
    hf_grads = {hf_mamba_name(n): p.grad for n, p in hf.named_parameters()}
    for name, p in ours.named_parameters():
        assert_close(p.grad, hf_grads[name], atol=1e-4, rtol=1e-4, what=f"grad {name}")
    # the backbone alone: HF MambaModel's last_hidden_state == our features
    feats = hf.backbone(tokens).last_hidden_state
    assert_close(ours.features(tokens), feats, atol=1e-5, rtol=1e-5, what="features")


def test_block_matches_hf_mixer(hf_pair):
    transformers, hc, hf, ours = hf_pair
    mixer_hf = hf.backbone.layers[1].mixer
    block = MambaBlock(config_from_hf(hc))
    block.load_state_dict(mixer_hf.state_dict())
    h = torch.randn(3, 30, 32, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        assert_close(block(h), mixer_hf(h), atol=1e-5, rtol=1e-5, what="mixer")


def test_greedy_generation_matches_hf(hf_pair):
    _, _, hf, ours = hf_pair
    prompt = torch.randint(0, 50, (1, 6), generator=torch.Generator().manual_seed(10))
    ref = hf.generate(prompt, max_new_tokens=8, do_sample=False, pad_token_id=0)
    assert torch.equal(ours.generate(prompt, 8), ref)
    assert torch.equal(ours.generate(prompt[0], 8), ref[0])


def test_loading_rejects_mismatched_weights(hf_pair):
    _, hc, hf, _ = hf_pair
    sd = dict(hf.state_dict())
    sd.pop("backbone.layers.0.mixer.D")
    with pytest.raises(ConfigError, match="missing.*layers.0.mixer.D"):
        load_hf_mamba_state_dict(MambaLM(config_from_hf(hc)), sd)
    sd = dict(hf.state_dict())
    sd["lm_head.weight"] = sd["lm_head.weight"] + 1
    with pytest.raises(ConfigError, match="not tied"):
        load_hf_mamba_state_dict(MambaLM(config_from_hf(hc)), sd)
    with pytest.raises(ConfigError, match="shape"):
        load_hf_mamba_state_dict(MambaLM(config_from_hf(hc), d_state=4), hf.state_dict())
    assert hf_mamba_name("backbone.embedding.weight") == "embeddings.weight"


# ----------------------------------------------------------------------------- inference


@pytest.mark.parametrize("selective", [True, False])
def test_step_by_step_equals_parallel_and_sequential_forward(selective):
    torch.manual_seed(0)
    model = MambaLM(d_model=24, n_layer=2, vocab_size=13, d_state=6, selective=selective).eval()
    with torch.no_grad():  # non-trivial weights for the parameters the init leaves plain
        for name, p in model.named_parameters():
            if name.endswith(("A_log", ".D", "B", "C", "conv1d.bias")):
                p.add_(torch.randn_like(p) * 0.5)
    tokens = torch.randint(0, 13, (3, 21), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = model(tokens)
        model.config.scan = "sequential"
        seq = model(tokens)
        model.config.scan = "parallel"
        cache = model.allocate_cache(3)
        steps = torch.stack([model.step(tokens[:, t], cache) for t in range(21)], dim=1)
        assert cache.length == 21
        cache = model.allocate_cache(3)  # prefill in two parallel chunks, then one step
        parts = [model(tokens[:, :5], cache), model(tokens[:, 5:20], cache)]
        last = model.step(tokens[:, 20], cache)
    assert_close(seq, full, what="sequential scan vs parallel scan")
    assert_close(steps, full, what="step-by-step vs parallel")
    assert_close(torch.cat(parts + [last[:, None]], 1), full, what="chunked prefill + step")


def test_generate_is_greedy_over_full_forward():
    torch.manual_seed(1)
    model = MambaLM(d_model=16, n_layer=1, vocab_size=11, d_state=4).eval()
    prompt = torch.randint(0, 11, (2, 4), generator=torch.Generator().manual_seed(2))
    out = model.generate(prompt, 5)
    seq = prompt
    with torch.no_grad():
        for _ in range(5):
            seq = torch.cat((seq, model(seq)[:, -1].argmax(-1, keepdim=True)), dim=1)
    assert torch.equal(out, seq)
    assert torch.equal(model.generate(prompt, 0), prompt)
    with pytest.raises(ArgumentError, match="max_new_tokens"):
        model.generate(prompt, -1)
    with pytest.raises(ShapeError, match="tokens"):
        model(torch.zeros(2, 3, 4, dtype=torch.long))
    with pytest.raises(ShapeError, match="cache was allocated"):
        model.step(prompt[:, 0], model.allocate_cache(3))


def test_registry_builds_the_model_and_it_trains():
    model = paperlab.create("model", "mamba", d_model=16, n_layer=1, vocab_size=7, d_state=4)
    tokens = torch.randint(0, 7, (2, 9))
    logits = model(tokens)
    assert logits.shape == (2, 9, 7) and torch.isfinite(logits).all()
    logits.logsumexp(-1).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
