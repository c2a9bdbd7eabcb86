"""Zero-shot classification and retrieval recall@K on hand-made embeddings with known answers."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import require
from parity import assert_close

from paperlab.errors import ArgumentError, ShapeError
from paperlab.multimodal.zero_shot import (
    format_prompts,
    retrieval_recall_at_k,
    zero_shot_classifier,
    zero_shot_logits,
    zero_shot_predict,
)

pytestmark = pytest.mark.note("D5")


class Lookup(torch.nn.Module):
    """A fake two-tower model: a text is embedded by a table over its word ids (sum of rows),
    an image (B, 2) is its own embedding."""

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.table = torch.nn.Parameter(table)

    def encode_text(self, ids, mask):
        return F.normalize((self.table[ids] * mask[..., None]).sum(1), dim=-1)

    def encode_image(self, images):
        return F.normalize(images, dim=-1)


def words_encoder(vocab):
    def encode(texts):
        rows = [[vocab[w] for w in t.split()] for t in texts]
        n = max(map(len, rows))
        ids = torch.tensor([r + [0] * (n - len(r)) for r in rows])
        mask = torch.tensor([[1] * len(r) + [0] * (n - len(r)) for r in rows])
        return ids, mask
    return encode


def test_classifier_is_the_renormalised_mean_of_normalised_prompts():
    """Two templates with different norms: the class weight is normalise(mean(normalise(.)))
    (CLIP's ensembling), computed here by hand."""
    vocab = {"<pad>": 0, "cat": 1, "dog": 2, "photo": 3, "drawing": 4}
    table = torch.zeros(5, 2, dtype=torch.float64)
    table[1], table[2] = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    table[3], table[4] = torch.tensor([0.0, 3.0]), torch.tensor([0.5, 0.0])
    model = Lookup(table)
    w = zero_shot_classifier(model, ["cat", "dog"], ["photo {}", "drawing {}"],
                             words_encoder(vocab))
    def n(v):
        return F.normalize(torch.tensor(v, dtype=torch.float64), dim=-1)
    cat = F.normalize((n([1.0, 3.0]) + n([1.5, 0.0])) / 2, dim=-1)
    dog = F.normalize((n([0.0, 4.0]) + n([0.5, 1.0])) / 2, dim=-1)
    assert_close(w, torch.stack([cat, dog]), what="class weights")
    images = torch.tensor([[1.0, 0.1], [0.1, 1.0], [2.0, 0.5]], dtype=torch.float64)
    assert zero_shot_predict(model, images, w).tolist() == [0, 1, 0]
    logits = zero_shot_logits(images, w)
    assert logits.shape == (3, 2) and logits.abs().max() <= 1 + 1e-12


def test_classifier_with_a_real_tokenizer_and_clip():
    """End to end: a word-level HF tokenizer and an untrained CLIP give unit class vectors."""
    require("tokenizers", "tokenizer backend")
    from paperlab.language.tokenizer import word_level_tokenizer
    from paperlab.multimodal.clip import CLIP, clip_text_config

    tok = word_level_tokenizer(["a", "photo", "of", "red", "blue", "circle"])
    torch.manual_seed(0)
    model = CLIP(text=clip_text_config(vocab_size=tok.get_vocab_size(), max_length=8),
                 projection_dim=16).eval()
    w = zero_shot_classifier(model, ["red circle", "blue circle"], ["a photo of {}"], tok, 8)
    assert w.shape == (2, 16)
    assert_close(w.norm(dim=-1), torch.ones(2), what="unit rows")
    assert (w[0] - w[1]).abs().max() > 1e-4


def test_prompts_and_their_errors():
    assert format_prompts(["cat"], ["a {}.", "the {}!"]) == [["a cat.", "the cat!"]]
    with pytest.raises(ArgumentError, match="exactly once"):
        format_prompts(["cat"], ["no slot"])
    with pytest.raises(ArgumentError, match="class_names"):
        format_prompts("cat", ["a {}"])


def test_recall_at_k_known_answers():
    """Images e_0..e_3 (unit axes); texts chosen so the ranks are known:
    text 0 -> image 0 (rank 0), text 1 -> image 1 but closest to image 2 (rank 1),
    text 2 -> image 2 but ranked last among 4 (rank 3), text 3 -> image 3 (rank 0)."""
    images = torch.eye(4)
    texts = torch.tensor([
        [1.0, 0.1, 0.0, 0.0],
        [0.0, 0.5, 1.0, 0.0],
        [0.9, 0.8, 0.1, 0.7],
        [0.0, 0.0, 0.0, 1.0],
    ])
    r = retrieval_recall_at_k(images, texts, (1, 2, 4))
    assert r["t2i@1"] == 0.5 and r["t2i@2"] == 0.75 and r["t2i@4"] == 1.0
    # image -> text (by hand from the cosines): image 0's caption is its best text (rank 0);
    # image 1: text 2 (0.57) beats its text 1 (0.45), rank 1; image 2: text 1 (0.89) beats its
    # text 2 (0.07), rank 1; image 3: rank 0
    assert r["i2t@1"] == 0.5 and r["i2t@2"] == 1.0 and r["i2t@4"] == 1.0


def test_recall_with_several_captions_per_image():
    """Image 0 has captions 0 and 1, image 1 has caption 2. Caption 1 is far from image 0, but
    image->text takes the best of its captions, so i2t@1 = 1 while t2i@1 = 2/3."""
    images = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    texts = torch.tensor([[1.0, 0.1], [0.2, 1.0], [0.1, 1.0]])
    r = retrieval_recall_at_k(images, texts, 1, text_to_image_index=[0, 0, 1])
    assert r == {"i2t@1": 1.0, "t2i@1": pytest.approx(2 / 3)}


def test_ties_count_against_the_query():
    same = torch.ones(3, 4)
    r = retrieval_recall_at_k(same, same, (1, 3))
    assert r["i2t@1"] == 0.0 and r["t2i@1"] == 0.0 and r["t2i@3"] == 1.0


def test_recall_errors():
    with pytest.raises(ShapeError, match="text_to_image_index"):
        retrieval_recall_at_k(torch.randn(3, 4), torch.randn(5, 4), 1)
    with pytest.raises(ShapeError, match="E=4"):
        retrieval_recall_at_k(torch.randn(3, 4), torch.randn(3, 5), 1)
    with pytest.raises(ArgumentError, match="no text"):
        retrieval_recall_at_k(torch.randn(3, 4), torch.randn(2, 4), 1, text_to_image_index=[0, 0])
    with pytest.raises(ArgumentError, match=r"\[0, 3\)"):
        retrieval_recall_at_k(torch.randn(3, 4), torch.randn(3, 4), 1,
                              text_to_image_index=[0, 1, 3])
    with pytest.raises(ArgumentError, match="k must be >= 1"):
        retrieval_recall_at_k(torch.randn(3, 4), torch.randn(3, 4), 0)
