"""Tokenisation: HF tokenizers from tokenizer.json or vocab.txt, word-level grammars, batches."""

from __future__ import annotations

import pytest
import torch
from conftest import require

from paperlab.errors import ArgumentError, ArgumentTypeError, ConfigError
from paperlab.language.tokenizer import (
    encode_batch,
    load_tokenizer,
    special_token_ids,
    token_id,
    word_level_tokenizer,
)

pytestmark = pytest.mark.note("D2")

WORDS = ["the", "dog", "dogs", "barks", "bark", "loudly"]


def _vocab_folder(tmp_path):
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "un", "##aff", "##able", "dog",
             "##s", "bark", ",", "!", "the"]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    return tmp_path, {t: i for i, t in enumerate(vocab)}


def test_vocab_txt_gives_bert_wordpiece(tmp_path):
    folder, ids = _vocab_folder(tmp_path)
    tok = load_tokenizer(folder)
    enc = tok.encode("The UNAFFABLE dogs, bark!")
    assert enc.tokens == ["[CLS]", "the", "un", "##aff", "##able", "dog", "##s", ",", "bark",
                          "!", "[SEP]"]
    assert enc.ids == [ids[t] for t in enc.tokens]
    assert tok.encode("zebra").tokens == ["[CLS]", "[UNK]", "[SEP]"]
    assert special_token_ids(tok) == [0, 1, 2, 3, 4]
    assert load_tokenizer(folder / "vocab.txt").encode("dogs").ids == enc.ids[:1] + [8, 9, 3]


def test_vocab_txt_matches_hf_bert_tokenizer(tmp_path):
    """The pure-Python (legacy) BertTokenizer of transformers is an independent implementation."""
    legacy = require("transformers.models.bert.tokenization_bert_legacy")
    folder, _ = _vocab_folder(tmp_path)
    ref = legacy.BertTokenizerLegacy(vocab_file=str(folder / "vocab.txt"))
    ours = load_tokenizer(folder)
    for text in ["The UNAFFABLE dogs, bark!", "dog!dog,the  zebra", "Únaffable"]:
        assert ours.encode(text).ids == ref(text)["input_ids"], text


def test_tokenizer_json_is_preferred_and_round_trips(tmp_path):
    tok = word_level_tokenizer(WORDS)
    tok.save(str(tmp_path / "tokenizer.json"))
    (tmp_path / "vocab.txt").write_text("[UNK]\n")  # ignored: tokenizer.json wins
    loaded = load_tokenizer(tmp_path)
    assert loaded.encode("the dog barks").ids == tok.encode("the dog barks").ids


def test_word_level_tokenizer():
    tok = word_level_tokenizer(WORDS + ["dog"])  # duplicates kept once
    assert tok.get_vocab_size() == 5 + len(WORDS)
    enc = tok.encode("The dog BARKS loudly cat")
    assert enc.tokens == ["[CLS]", "the", "dog", "barks", "loudly", "[UNK]", "[SEP]"]
    assert enc.ids == [2, 5, 6, 8, 10, 1, 3]
    assert token_id(tok, "[MASK]") == 4
    with pytest.raises(ConfigError, match="no token"):
        token_id(tok, "[BOS]")


def test_encode_batch_pads_truncates_and_keeps_specials():
    tok = word_level_tokenizer(WORDS)
    ids, mask = encode_batch(tok, ["the dog barks", "the dogs bark loudly loudly loudly"], 6)
    assert ids.dtype == torch.long and mask.dtype == torch.bool and ids.shape == (2, 6)
    assert ids.tolist() == [[2, 5, 6, 8, 3, 0], [2, 5, 7, 9, 10, 3]]
    assert mask.tolist() == [[True] * 5 + [False], [True] * 6]
    plain, _ = encode_batch(tok, ["the dog"], 4, add_special_tokens=False)
    assert plain.tolist() == [[5, 6, 0, 0]]
    assert tok.padding is None and tok.truncation is None  # settings restored


def test_encode_batch_restores_the_tokenizers_own_settings(tmp_path):
    tok = word_level_tokenizer(WORDS)
    tok.enable_padding(length=9, pad_id=0, pad_token="[PAD]")
    tok.enable_truncation(max_length=9)
    ids, _ = encode_batch(tok, ["the dog"], 5)
    assert ids.shape == (1, 5)
    assert tok.padding["length"] == 9 and tok.truncation["max_length"] == 9


def test_errors_name_the_path_and_argument(tmp_path):
    with pytest.raises(ArgumentError, match="neither tokenizer.json nor vocab.txt"):
        load_tokenizer(tmp_path)
    with pytest.raises(ArgumentError, match="does not exist"):
        load_tokenizer(tmp_path / "nowhere")
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(ConfigError, match="tokenizer.json"):
        load_tokenizer(tmp_path)
    with pytest.raises(ArgumentTypeError, match="path must be"):
        load_tokenizer(3)
    tok = word_level_tokenizer(WORDS)
    with pytest.raises(ArgumentTypeError, match="texts must be a list"):
        encode_batch(tok, "the dog", 5)
    with pytest.raises(ArgumentTypeError, match=r"texts\[1\]"):
        encode_batch(tok, ["the", 3], 5)
    with pytest.raises(ArgumentError, match="max_length must leave room"):
        encode_batch(tok, ["the"], 1)
    with pytest.raises(ArgumentError, match="non-empty str without spaces"):
        word_level_tokenizer(["two words"])
    with pytest.raises(ConfigError, match=r"\[UNK\]"):
        word_level_tokenizer(WORDS, specials=("[PAD]",))
