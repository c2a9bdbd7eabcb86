"""BERT: parity with HF transformers through our importer, the 80/10/10 masking, bad input."""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import require
from parity import assert_close

from paperlab.errors import ArgumentError, ArgumentTypeError, ConfigError, ShapeError
from paperlab.hub import load_pretrained
from paperlab.hub.base import WeightImportError
from paperlab.language.bert import (
    BertConfig,
    BertForMaskedLM,
    BertForPreTraining,
    BertModel,
    mask_tokens,
    mean_pool,
    mlm_loss,
    pretraining_loss,
    special_tokens_mask,
)

pytestmark = pytest.mark.note("D2")

V, L = 50, 12
TINY = dict(vocab_size=V, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=48, max_position_embeddings=24, type_vocab_size=2)


def _save_hf(tmp_path, cls_name: str, **extra):
    """A tiny random HF model of class ``cls_name``, every tensor perturbed, saved to disk."""
    transformers = require("transformers")
    torch.manual_seed(0)
    ref = getattr(transformers, cls_name)(transformers.BertConfig(**TINY, **extra)).eval()
    with torch.no_grad():  # make biases and LayerNorms non-trivial so a mis-mapping shows
        for p in ref.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    folder = tmp_path / cls_name
    ref.save_pretrained(folder)
    return ref, folder


def _inputs(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, V, (3, L), generator=g)
    mask = torch.ones(3, L, dtype=torch.long)
    mask[1, 8:] = 0
    mask[2, 3:] = 0
    types = torch.randint(0, 2, (3, L), generator=g)
    return ids, mask, types


def test_masked_lm_logits_equal_hf_float32(tmp_path):
    ref, folder = _save_hf(tmp_path, "BertForMaskedLM")
    ours = load_pretrained("bert", folder)
    assert isinstance(ours, BertForMaskedLM) and ours.bert.pooler is None
    ids, mask, types = _inputs()
    with torch.no_grad():
        got = ours(ids, mask, types)
        want = ref(input_ids=ids, attention_mask=mask, token_type_ids=types).logits
    err = assert_close(got, want, dtype=torch.float32)  # padded rows compared too
    assert err < 1e-5


def test_masked_lm_float64_and_gradients(tmp_path):
    ref, folder = _save_hf(tmp_path, "BertForMaskedLM")
    ours = load_pretrained("bert", folder).double()  # eval mode: no dropout
    ref = ref.double()
    ids, mask, types = _inputs(2)
    got = ours(ids, mask, types)
    want = ref(input_ids=ids, attention_mask=mask, token_type_ids=types).logits
    assert_close(got, want, dtype=torch.float64)
    labels = torch.where(torch.rand(ids.shape) < 0.3, ids, torch.full_like(ids, -100))
    mlm_loss(got, labels).backward()
    torch.nn.functional.cross_entropy(want.flatten(0, 1), labels.flatten()).backward()
    ours_g = ours.bert.embeddings.word_embeddings.weight.grad
    ref_g = ref.bert.embeddings.word_embeddings.weight.grad  # embedding + tied decoder
    assert_close(ours_g, ref_g, dtype=torch.float64, what="tied word-embedding grad")
    assert_close(ours.bert.layers[0].self_attn.q_proj.weight.grad,
                 ref.bert.encoder.layer[0].attention.self.query.weight.grad,
                 dtype=torch.float64, what="layer 0 query grad")


def test_bert_model_hidden_states_and_pooler_equal_hf(tmp_path):
    ref, folder = _save_hf(tmp_path, "BertModel")
    ours = load_pretrained("bert", folder)
    assert isinstance(ours, BertModel) and ours.pooler is not None
    ids, mask, types = _inputs(3)
    with torch.no_grad():
        out = ours(ids, mask, types)
        want = ref(input_ids=ids, attention_mask=mask, token_type_ids=types)
    assert_close(out.last_hidden_state, want.last_hidden_state, dtype=torch.float32)
    assert_close(out.pooler_output, want.pooler_output, dtype=torch.float32)
    ours64, ref64 = ours.double(), ref.double()
    with torch.no_grad():
        out = ours64(ids, mask, types)
        want = ref64(input_ids=ids, attention_mask=mask, token_type_ids=types)
    assert_close(out.last_hidden_state, want.last_hidden_state, dtype=torch.float64)
    assert_close(out.pooler_output, want.pooler_output, dtype=torch.float64)


def test_pretraining_heads_equal_hf(tmp_path):
    ref, folder = _save_hf(tmp_path, "BertForPreTraining")
    ours = load_pretrained("bert", folder)
    assert isinstance(ours, BertForPreTraining)
    ids, mask, types = _inputs(4)
    with torch.no_grad():
        out = ours(ids, mask, types)
        want = ref(input_ids=ids, attention_mask=mask, token_type_ids=types)
    assert_close(out.mlm_logits, want.prediction_logits, dtype=torch.float32)
    assert_close(out.nsp_logits, want.seq_relationship_logits, dtype=torch.float32)
    labels = torch.where(torch.arange(L) % 3 == 1, ids, torch.full_like(ids, -100))
    nsp = torch.tensor([0, 1, 1])
    with torch.no_grad():
        ref_loss = ref(input_ids=ids, attention_mask=mask, token_type_ids=types, labels=labels,
                       next_sentence_label=nsp).loss
    assert_close(pretraining_loss(out, labels, nsp), ref_loss, dtype=torch.float32)


def test_padding_does_not_change_real_tokens():
    torch.manual_seed(0)
    model = BertModel(**TINY, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0).eval()
    ids = torch.randint(5, V, (1, 7))
    padded = torch.cat((ids, torch.zeros(1, 5, dtype=torch.long)), 1)
    mask = torch.cat((torch.ones(1, 7), torch.zeros(1, 5)), 1)
    with torch.no_grad():
        short = model(ids).last_hidden_state
        long = model(padded, mask).last_hidden_state[:, :7]
    assert_close(long, short, dtype=torch.float32)
    pooled = mean_pool(model(padded, mask).last_hidden_state, mask)
    assert_close(pooled, short.mean(1), dtype=torch.float32)


# --- masking ---------------------------------------------------------------------------------


def _z(count: int, n: int, p: float) -> float:
    return (count - n * p) / math.sqrt(n * p * (1 - p))


def test_mask_tokens_statistics_follow_80_10_10():
    vocab, mask_id = 40, 4
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, vocab, (400, 256), generator=g)
    special = torch.zeros_like(ids, dtype=torch.bool)
    special[:, 0] = special[:, -1] = True  # [CLS] ... [SEP]
    special[::3, 200:] = True  # padding
    masked, labels = mask_tokens(ids, special, vocab, mask_token_id=mask_id, p=0.15, generator=g)
    selected = labels != -100
    assert not bool(selected[special].any()), "a special token was selected"
    assert torch.equal(labels[selected], ids[selected])
    assert torch.equal(masked[~selected], ids[~selected])
    n_eligible, n_sel = int((~special).sum()), int(selected.sum())
    assert abs(_z(n_sel, n_eligible, 0.15)) < 4.5
    out = masked[selected]
    orig = ids[selected]
    # a random replacement may hit [MASK] or the original token: 1/V each
    p_mask, p_same = 0.8 + 0.1 / vocab, 0.1 + 0.1 / vocab
    p_other = 0.1 * (vocab - 2) / vocab
    for count, p in ((int((out == mask_id).sum()), p_mask),
                     (int((out == orig).sum()), p_same),
                     (int(((out != mask_id) & (out != orig)).sum()), p_other)):
        assert abs(_z(count, n_sel, p)) < 4.5, (count, n_sel, p)
    # random replacements are uniform over the vocabulary
    hist = torch.bincount(out[(out != mask_id) & (out != orig)], minlength=vocab).float()
    hist = torch.cat((hist[:mask_id], hist[mask_id + 1:]))  # [MASK] counted above
    assert hist.min() > 0 and hist.max() / hist.mean() < 1.6


def test_mask_tokens_is_deterministic_by_generator():
    ids = torch.randint(5, 30, (8, 20))
    special = torch.zeros_like(ids, dtype=torch.bool)
    a = mask_tokens(ids, special, 30, mask_token_id=4, generator=torch.Generator().manual_seed(3))
    b = mask_tokens(ids, special, 30, mask_token_id=4, generator=torch.Generator().manual_seed(3))
    c = mask_tokens(ids, special, 30, mask_token_id=4, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])
    none, _ = mask_tokens(ids, special, 30, mask_token_id=4, p=0.0)
    assert torch.equal(none, ids)


def test_special_tokens_mask():
    ids = torch.tensor([[2, 7, 8, 3, 0, 0]])
    assert special_tokens_mask(ids, [0, 2, 3]).tolist() == [[True, False, False, True, True, True]]


# --- bad input -------------------------------------------------------------------------------


def test_bad_inputs_raise_clear_errors():
    model = BertForMaskedLM(**TINY)
    with pytest.raises(ArgumentError, match=r"input_ids must lie in \[0, vocab_size=50\)"):
        model(torch.tensor([[1, 50]]))
    with pytest.raises(ShapeError, match="input_ids must be"):
        model(torch.zeros(4, dtype=torch.long))
    with pytest.raises(ShapeError, match="max_position_embeddings"):
        model(torch.zeros(1, 25, dtype=torch.long))
    with pytest.raises(ShapeError, match="attention_mask must have"):
        model(torch.zeros(2, 5, dtype=torch.long), torch.ones(2, 4))
    with pytest.raises(ArgumentError, match="token_type_ids must lie"):
        model(torch.zeros(1, 3, dtype=torch.long), None, torch.tensor([[0, 1, 2]]))
    with pytest.raises(ConfigError, match="divisible"):
        BertModel(hidden_size=30, num_attention_heads=4)
    with pytest.raises(ConfigError, match="hidden_act"):
        BertModel(**{**TINY, "hidden_act": "swishy"})
    ids = torch.zeros(2, 3, dtype=torch.long)
    with pytest.raises(ArgumentTypeError, match="special_mask must be a bool"):
        mask_tokens(ids, torch.zeros(2, 3), 10, mask_token_id=4)
    with pytest.raises(ShapeError, match="special_mask must have"):
        mask_tokens(ids, torch.zeros(2, 4, dtype=torch.bool), 10, mask_token_id=4)
    with pytest.raises(ArgumentError, match="mask_token_id"):
        mask_tokens(ids, torch.zeros(2, 3, dtype=torch.bool), 10, mask_token_id=10)
    with pytest.raises(ArgumentError, match="p must be"):
        mask_tokens(ids, torch.zeros(2, 3, dtype=torch.bool), 10, mask_token_id=4, p=1.5)


def test_checkpoint_with_wrong_shape_or_extra_key_is_refused(tmp_path):
    from safetensors.torch import load_file, save_file

    _, folder = _save_hf(tmp_path, "BertModel")
    state = load_file(folder / "model.safetensors")

    bad = dict(state)
    bad["encoder.layer.1.intermediate.dense.weight"] = torch.zeros(40, 32)
    save_file(bad, folder / "model.safetensors")
    with pytest.raises(WeightImportError, match=r"layers\.1\.ffn\.fc1\.weight: checkpoint \(40"):
        load_pretrained("bert", folder)

    extra = dict(state)
    extra["encoder.layer.0.attention.self.rotary.weight"] = torch.zeros(3)
    save_file(extra, folder / "model.safetensors")
    with pytest.raises(WeightImportError, match="attention.self.rotary.weight"):
        load_pretrained("bert", folder)

    missing = {k: v for k, v in state.items() if "layer.1.output.LayerNorm" not in k}
    save_file(missing, folder / "model.safetensors")
    with pytest.raises(WeightImportError, match=r"missing \(2\): layers\.1\.norm2\.bias"):
        load_pretrained("bert", folder)

    save_file(state, folder / "model.safetensors")
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, "is_decoder": True}))
    with pytest.raises(ConfigError, match="is_decoder"):
        load_pretrained("bert", folder)


def test_config_round_trips_through_json():
    cfg = BertConfig(**TINY)
    assert BertConfig.from_json(cfg.to_json()) == cfg
