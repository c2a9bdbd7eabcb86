"""collate_image_text: stacked images and tokenised captions, usable as a DataLoader collate_fn."""

from __future__ import annotations

import functools

import pytest
import torch
from conftest import require
from torch.utils.data import DataLoader

from paperlab.data.formats.collate import collate_image_text
from paperlab.data.synthetic.shapes import ShapesDataset, caption_words, make_shapes
from paperlab.errors import ArgumentError, ArgumentTypeError, ShapeError


@pytest.fixture
def tokenizer():
    require("tokenizers", "the tokenizer")
    from paperlab.language.tokenizer import word_level_tokenizer

    return word_level_tokenizer(caption_words())


def test_shapes_batches_stack_images_and_tokenise_captions(tokenizer):
    data = make_shapes(6, seed=0, image_size=16)
    loader = DataLoader(
        ShapesDataset(data),
        batch_size=4,
        collate_fn=functools.partial(collate_image_text, tokenizer=tokenizer, max_length=12),
    )
    images, ids, mask = next(iter(loader))
    assert torch.equal(images, data.images[:4])
    assert ids.shape == mask.shape == (4, 12) and ids.dtype == torch.int64
    assert mask.dtype == torch.bool
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    for row, m, caption in zip(ids, mask, data.captions[:4]):
        words = caption.split()
        n = len(words) + 2
        assert m.tolist() == [True] * n + [False] * (12 - n)
        assert row[0] == cls and row[n - 1] == sep
        assert [tokenizer.id_to_token(i) for i in row[1 : n - 1].tolist()] == words
    assert tokenizer.token_to_id("[UNK]") not in ids.tolist()


def test_long_captions_are_truncated_keeping_cls_and_sep(tokenizer):
    pair = (torch.zeros(3, 2, 2), "a small red circle at the top left")
    _, ids, mask = collate_image_text([pair], tokenizer, max_length=5)
    assert ids.shape == (1, 5) and mask.all()
    assert tokenizer.id_to_token(ids[0, 0].item()) == "[CLS]"
    assert tokenizer.id_to_token(ids[0, -1].item()) == "[SEP]"


def test_bad_batches_are_named(tokenizer):
    good = (torch.zeros(3, 4, 4), "a")
    with pytest.raises(ShapeError, match=r"batch\[1\] image has shape \(3, 5, 4\)"):
        collate_image_text([good, (torch.zeros(3, 5, 4), "b")], tokenizer, 8)
    with pytest.raises(ShapeError, match=r"batch\[0\] image must be a \(C, H, W\) tensor"):
        collate_image_text([(torch.zeros(4, 4), "a")], tokenizer, 8)
    with pytest.raises(ArgumentTypeError, match=r"batch\[1\] caption must be a str"):
        collate_image_text([good, (torch.zeros(3, 4, 4), 3)], tokenizer, 8)
    with pytest.raises(ArgumentTypeError, match=r"batch\[0\] must be an \(image, caption\) pair"):
        collate_image_text([torch.zeros(3, 4, 4)], tokenizer, 8)
    with pytest.raises(ArgumentError, match="at least one"):
        collate_image_text([], tokenizer, 8)
