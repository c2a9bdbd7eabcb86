"""FVSBN, NADE, MADE (note G2): exact normalisation by enumeration, log_prob against a float64
loop over the conditionals, sampling frequencies against exp(log_prob) (chi-squared), the
autoregressive property, bad input; the binarised digits and the binary image folder."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy import stats

from paperlab.data.binary_images import BinaryImageFolder, binarise, binarised_digits
from paperlab.data.formats.common import DataFormatError
from paperlab.errors import ArgumentError, ArgumentTypeError, ShapeError
from paperlab.generative import FVSBN, MADE, NADE

pytestmark = pytest.mark.note(
    "G2", reference="definition (enumeration of all 2^D vectors, a loop over the conditionals)"
)


def all_vectors(d: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=d)), dtype=torch.float64)


def randomised(model: torch.nn.Module, seed: int = 0, scale: float = 1.0) -> torch.nn.Module:
    """The model in float64 with every parameter drawn N(0, scale^2) (far from the zero init)."""
    g = torch.Generator().manual_seed(seed)
    model = model.double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) * scale)
    return model


MODELS = {
    "fvsbn": lambda d: FVSBN(d),
    "nade": lambda d: NADE(d, 7),
    "made": lambda d: MADE(d, [9, 8], 3, seed=1),
    "made-1": lambda d: MADE(d, 10, 1),
}


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("d", [1, 5, 12])
def test_probabilities_of_all_vectors_sum_to_one(name, d):
    model = randomised(MODELS[name](d), seed=d, scale=1.5)
    with torch.no_grad():
        total = model.log_prob(all_vectors(d)).exp().sum().item()
    assert abs(total - 1.0) < 1e-10


def loop_fvsbn(m: FVSBN, x: torch.Tensor) -> torch.Tensor:
    out = torch.zeros(len(x), dtype=torch.float64)
    for n, row in enumerate(x):
        p = 1.0
        for i in range(m.dim):
            z = m.bias[i] + sum(m.weight[i, j] * row[j] for j in range(i))
            q = torch.sigmoid(torch.as_tensor(z))
            p = p * (q if row[i] == 1 else 1 - q)
        out[n] = torch.log(torch.as_tensor(p))
    return out


def loop_nade(m: NADE, x: torch.Tensor) -> torch.Tensor:
    out = torch.zeros(len(x), dtype=torch.float64)
    for n, row in enumerate(x):
        p = 1.0
        for i in range(m.dim):
            a = m.hidden_bias + m.weight[:, :i] @ row[:i]
            q = torch.sigmoid(m.out_bias[i] + m.out_weight[i] @ torch.sigmoid(a))
            p = p * (q if row[i] == 1 else 1 - q)
        out[n] = torch.log(p)
    return out


def loop_made(m: MADE, x: torch.Tensor, k: int) -> torch.Tensor:
    """Conditionals one by one: the logit of the i-th dimension in order k, computed with
    every later dimension (and itself) replaced by random values -- it must not matter."""
    g = torch.Generator().manual_seed(5)
    chain = torch.argsort(m.orders[k]).tolist()
    out = torch.zeros(len(x), dtype=torch.float64)
    for n, row in enumerate(x):
        p = 1.0
        for pos, d in enumerate(chain):
            masked = row.clone()
            later = chain[pos:]
            masked[later] = torch.randint(0, 2, (len(later),), generator=g).double()
            q = torch.sigmoid(m.logits(masked[None], k)[0, d])
            p = p * (q if row[d] == 1 else 1 - q)
        out[n] = torch.log(p)
    return out


def test_log_prob_equals_a_loop_over_the_conditionals():
    d = 9
    x = torch.randint(0, 2, (16, d), generator=torch.Generator().manual_seed(0)).double()
    f = randomised(FVSBN(d), 1)
    n = randomised(NADE(d, 6), 2)
    m = randomised(MADE(d, [12, 10], 3, seed=3), 3)
    with torch.no_grad():
        torch.testing.assert_close(f.log_prob(x), loop_fvsbn(f, x), atol=1e-12, rtol=0)
        torch.testing.assert_close(n.log_prob(x), loop_nade(n, x), atol=1e-12, rtol=0)
        per = []
        for k in range(3):
            ref = loop_made(m, x, k)
            torch.testing.assert_close(m.log_prob(x, mask=k), ref, atol=1e-12, rtol=0)
            per.append(ref)
        mix = torch.log(torch.stack(per).exp().mean(0))
        torch.testing.assert_close(m.log_prob(x), mix, atol=1e-12, rtol=0)


def test_made_orders_differ_and_the_first_is_natural():
    m = MADE(8, 16, 4, seed=0)
    assert torch.equal(m.orders[0], torch.arange(8))
    assert len({tuple(o.tolist()) for o in m.orders}) > 1


@pytest.mark.parametrize("name", ["fvsbn", "nade", "made"])
def test_sampling_frequencies_match_exp_log_prob(name):
    d, n = 6, 40_000
    model = randomised(MODELS[name](d), seed=11, scale=1.2)
    samples = model.sample(n, torch.Generator().manual_seed(7))
    codes = (samples.long() * (2 ** torch.arange(d - 1, -1, -1))).sum(1)
    observed = torch.bincount(codes, minlength=2**d).double().numpy()
    with torch.no_grad():
        expected = model.log_prob(all_vectors(d)).exp().numpy() * n  # same code order
    # merge rare cells so every expected count is >= 5
    keep = expected >= 5
    obs = np.append(observed[keep], observed[~keep].sum())
    exp = np.append(expected[keep], expected[~keep].sum())
    if exp[-1] == 0:
        obs, exp = obs[:-1], exp[:-1]
    _, pvalue = stats.chisquare(obs, exp)
    assert pvalue > 1e-3, pvalue
    # the test has power: frequencies from a different model are rejected
    other = randomised(MODELS[name](d), seed=12, scale=1.2)
    with torch.no_grad():
        wrong = other.log_prob(all_vectors(d)).exp().numpy() * n
    _, p_wrong = stats.chisquare(observed, wrong)
    assert p_wrong < 1e-6


def test_sampling_is_seeded_and_binary():
    m = randomised(NADE(10, 4))
    a = m.sample(8, torch.Generator().manual_seed(3))
    b = m.sample(8, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.shape == (8, 10)
    assert set(a.unique().tolist()) <= {0.0, 1.0}
    assert m.sample(0).shape == (0, 10)


def test_logit_i_ignores_x_i_and_later():
    d = 7
    for model in (randomised(FVSBN(d)), randomised(NADE(d, 5)), randomised(MADE(d, 9, 2))):
        x = torch.randint(0, 2, (4, d), generator=torch.Generator().manual_seed(1)).double()
        x.requires_grad_(True)
        logits = model.logits(x) if not isinstance(model, MADE) else model.logits(x, 1)
        chain = torch.arange(d) if not isinstance(model, MADE) else torch.argsort(model.orders[1])
        for pos, i in enumerate(chain.tolist()):
            (grad,) = torch.autograd.grad(logits[:, i].sum(), x, retain_graph=True)
            later = chain[pos:]
            assert grad[:, later].abs().max() == 0


def test_training_lowers_nll():
    torch.manual_seed(1)  # the initialisations
    x = torch.zeros(64, 6)
    x[::2, :3] = 1.0
    for model in (FVSBN(6), NADE(6, 4), MADE(6, 16, 1)):
        opt = torch.optim.Adam(model.parameters(), lr=0.05)
        start = -model.log_prob(x).mean().item()
        for _ in range(150):
            opt.zero_grad()
            loss = -model.log_prob(x).mean()
            loss.backward()
            opt.step()
        assert loss.item() < 0.3 * start  # data has 1 bit of entropy (log 2 = 0.69 nats)


def test_parameter_counts():
    assert FVSBN(64).num_parameters() == 64 * 63 // 2 + 64
    assert NADE(64, 15).num_parameters() == 2 * 64 * 15 + 15 + 64


def test_bad_input_names_the_argument():
    m = FVSBN(4)
    with pytest.raises(ShapeError, match=r"x must have shape \(B, 4\)"):
        m.log_prob(torch.zeros(3, 5))
    with pytest.raises(ArgumentError, match="only 0 and 1"):
        m.log_prob(torch.full((2, 4), 0.5))
    with pytest.raises(ArgumentTypeError, match="x must be a torch.Tensor"):
        m.log_prob([[0, 1, 0, 1]])
    with pytest.raises(ArgumentError, match="D must be >= 1"):
        NADE(0, 3)
    with pytest.raises(ArgumentError, match="hidden must be >= 1"):
        NADE(3, 0)
    with pytest.raises(ArgumentError, match="num_masks must be >= 1"):
        MADE(3, 4, 0)
    with pytest.raises(ArgumentError, match="mask must be < num_masks"):
        MADE(3, 4, 2).log_prob(torch.zeros(1, 3), mask=2)
    with pytest.raises(ArgumentError, match="n must be >= 0"):
        m.sample(-1)
    with pytest.raises(ArgumentTypeError, match="generator must be"):
        m.sample(2, generator=3)


def test_binarised_digits_split_and_values():
    train, val, test = binarised_digits(seed=0)
    assert train.shape[1] == 64 and len(train) + len(val) + len(test) == 1797
    assert set(train.unique().tolist()) == {0.0, 1.0}
    assert abs(len(test) - 359) <= 1 and abs(len(val) - 359) <= 1
    again = binarised_digits(seed=0)
    assert torch.equal(again[2], test)
    assert not torch.equal(binarised_digits(seed=1)[2], test)
    assert torch.equal(binarise(torch.tensor([[0.49, 0.5, 0.9]])), torch.tensor([[0.0, 1.0, 1.0]]))
    with pytest.raises(ArgumentError, match="val_fraction \\+ test_fraction"):
        binarised_digits(val_fraction=0.6, test_fraction=0.5)


def _png(path, array):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(path)


def test_binary_image_folder(tmp_path):
    a = np.zeros((4, 3))
    a[1, 1] = 255
    _png(tmp_path / "a.png", a)
    _png(tmp_path / "sub" / "b.png", 255 - a)
    (tmp_path / "notes.txt").write_text("not an image")
    ds = BinaryImageFolder(tmp_path)
    assert len(ds) == 2 and ds.shape == (4, 3) and ds.dim == 12
    assert ds[0].tolist() == (a.flatten() >= 128).astype(float).tolist()
    assert torch.equal(BinaryImageFolder(tmp_path, invert=True)[0], 1 - ds[0])
    assert BinaryImageFolder(tmp_path, image_size=8).dim == 64


def test_binary_image_folder_errors_name_the_file(tmp_path):
    _png(tmp_path / "a.png", np.zeros((4, 4)))
    _png(tmp_path / "b.png", np.zeros((5, 4)))
    (tmp_path / "c.png").write_bytes(b"not a png")
    with pytest.raises(DataFormatError, match=r"b\.png: image size"):
        BinaryImageFolder(tmp_path)
    (tmp_path / "b.png").unlink()
    with pytest.raises(DataFormatError, match=r"c\.png: cannot read image"):
        BinaryImageFolder(tmp_path)
    ds = BinaryImageFolder(tmp_path, skip_bad=True)
    assert len(ds) == 1 and ds.skipped[0].path.endswith("c.png")
    with pytest.raises(DataFormatError, match="not found"):
        BinaryImageFolder(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataFormatError, match="no image files"):
        BinaryImageFolder(empty)
