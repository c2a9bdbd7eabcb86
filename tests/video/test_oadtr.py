"""OadTR: windows, the streaming step equals the batched model, the loss, masks, ablations."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from paperlab.errors import ShapeError
from paperlab.video.oadtr import (
    LSTMDetector,
    OadTR,
    OadTRStream,
    TRNDetector,
    future_targets,
    oadtr_loss,
    sliding_windows,
    task_token_attention,
)

pytestmark = pytest.mark.note("H1", reference="the batched model (streaming), definition")

SMALL = dict(feature_dim=5, num_classes=4, window=6, dim=16, depth=2, num_heads=2,
             ffn_dim=24, future=3)


def test_sliding_windows_and_future_targets():
    x = torch.arange(8.0).view(4, 2)
    w = sliding_windows(x, 3)
    assert w.shape == (4, 3, 2)
    assert torch.equal(w[0], torch.tensor([[0.0, 0], [0, 0], [0, 1]]))
    assert torch.equal(w[3], x[1:4])
    f = future_targets(torch.tensor([1, 2, 3, 0]), 2, ignore_index=9)
    assert f.tolist() == [[2, 3], [3, 0], [0, 9], [9, 9]]


@pytest.mark.parametrize(("task_token", "decoder"), [(True, True), (False, True), (True, False)])
def test_stream_step_equals_the_batched_model(task_token, decoder):
    torch.manual_seed(0)
    model = OadTR(**SMALL, task_token=task_token, decoder=decoder).eval()
    feats = torch.randn(15, 5)
    with torch.no_grad():
        batched = torch.softmax(model(sliding_windows(feats, 6)).current, dim=-1)
    stream = OadTRStream(model)
    stepped = torch.stack([stream.step(f) for f in feats])
    torch.testing.assert_close(stepped, batched, atol=1e-5, rtol=1e-5)
    stream.reset()
    torch.testing.assert_close(stream.step(feats[0]), batched[0], atol=1e-5, rtol=1e-5)


def test_outputs_and_ablations():
    x = torch.randn(3, 6, 5)
    out = OadTR(**SMALL)(x)
    assert out.current.shape == (3, 4) and out.future.shape == (3, 3, 4)
    assert OadTR(**SMALL, task_token=False).pos.shape == (1, 6, 16)
    assert OadTR(**SMALL).pos.shape == (1, 7, 16)
    no_dec = OadTR(**SMALL, decoder=False)
    assert no_dec(x).future is None and no_dec.current_head.in_features == 16
    assert LSTMDetector(5, 4, hidden=8)(x).current.shape == (3, 4)
    with pytest.raises(ShapeError, match="windows"):
        OadTR(**SMALL)(torch.randn(3, 7, 5))


def test_decoder_queries_are_causal():
    torch.manual_seed(1)
    model = OadTR(**SMALL).eval()
    memory = model.encode(model.input_proj(torch.randn(2, 6, 5)))
    before = model.decode(memory)
    with torch.no_grad():
        model.queries[:, 2] += 5.0  # the last query
    after = model.decode(memory)
    assert torch.allclose(before[:, :2], after[:, :2], atol=1e-6)
    assert not torch.allclose(before[:, 2], after[:, 2])


def test_loss_weights_and_ignores_ambiguous():
    torch.manual_seed(2)
    model = OadTR(**SMALL)
    out = model(torch.randn(6, 6, 5))
    amb = 3
    cur = torch.tensor([0, 1, 2, amb, 1, 0])
    fut = torch.tensor([[0, 1, amb]] * 6)
    loss = oadtr_loss(out, cur, fut, ignore_index=amb)
    keep = cur != amb
    ref = F.cross_entropy(out.current[keep], cur[keep]) + 0.5 * F.cross_entropy(
        out.future[:, :2].reshape(-1, 4), fut[:, :2].reshape(-1))
    torch.testing.assert_close(loss, ref)
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    only = oadtr_loss(out, cur, fut, ignore_index=amb, future_weight=0.0)
    torch.testing.assert_close(only, F.cross_entropy(out.current[keep], cur[keep]))


def test_task_token_attention_is_a_distribution():
    model = OadTR(**SMALL)
    a = task_token_attention(model, torch.randn(4, 6, 5))
    assert a.shape == (4, 7) and torch.allclose(a.sum(-1), torch.ones(4))
    assert model.training  # the mode is restored


def test_trn_predicts_the_future_and_trains():
    torch.manual_seed(3)
    model = TRNDetector(5, 4, hidden=8, future=3)
    out = model(torch.randn(6, 6, 5))
    assert out.current.shape == (6, 4) and out.future.shape == (6, 3, 4)
    oadtr_loss(out, torch.randint(0, 4, (6,)), torch.randint(0, 4, (6, 3))).backward()
    assert all(p.grad is not None for p in model.parameters())
