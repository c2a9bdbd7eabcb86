"""Tokenisation for the language models: HF ``tokenizers``, never a hand-written tokenizer.

BERT reads WordPiece tokens (Wu et al. 2016; Devlin et al. 2019): the text is normalised
(lower-cased, accents stripped, Chinese characters spaced), split on whitespace and
punctuation, and each word is cut greedily into the longest vocabulary pieces (``un``,
``##aff``, ``##able``). A sentence becomes ``[CLS] tokens [SEP]`` (a pair
``[CLS] A [SEP] B [SEP]``). All of that is the job of the field's standard library,
HF ``tokenizers``; this module only builds and drives its ``Tokenizer`` objects:

- ``load_tokenizer(path)``: a folder (or file) holding ``tokenizer.json``, or a WordPiece
  ``vocab.txt`` (then the BERT normaliser, pre-tokeniser and [CLS] x [SEP] template);
- ``word_level_tokenizer(words)``: one id per word, for the synthetic grammars of the
  experiments (``data/synthetic/corpus.py``);
- ``encode_batch(tokenizer, texts, max_length)``: padded, truncated (B, L) id and mask tensors.

Shapes: ``input_ids`` (B, L) int64; ``attention_mask`` (B, L) bool, True = a real token
(the inverse of the attention modules' ``key_padding_mask``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

from paperlab.errors import ArgumentError, ArgumentTypeError, ConfigError, check_int

SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def _bert_template(tokenizer: Any, cls: str = "[CLS]", sep: str = "[SEP]") -> Any:
    """The ``[CLS] $A [SEP]`` / ``[CLS] $A [SEP] $B:1 [SEP]:1`` post-processor."""
    from tokenizers.processors import TemplateProcessing

    ids = {}
    for token in (cls, sep):
        ids[token] = tokenizer.token_to_id(token)
        if ids[token] is None:
            raise ConfigError(f"the vocabulary has no {token} token, which BERT's template needs")
    return TemplateProcessing(
        single=f"{cls} $A {sep}",
        pair=f"{cls} $A {sep} $B:1 {sep}:1",
        special_tokens=[(cls, ids[cls]), (sep, ids[sep])],
    )


def _lowercase_from_config(folder: Path) -> bool:
    """``do_lower_case`` of a ``tokenizer_config.json`` next to the vocabulary (default True)."""
    cfg = folder / "tokenizer_config.json"
    if cfg.is_file():
        try:
            return bool(json.loads(cfg.read_text()).get("do_lower_case", True))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{cfg}: not valid JSON ({exc})") from None
    return True


def wordpiece_from_vocab(vocab_file: str | Path, *, lowercase: bool = True) -> Any:
    """A BERT WordPiece ``tokenizers.Tokenizer`` from a ``vocab.txt`` (one token per line)."""
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers
    from tokenizers.models import WordPiece

    vocab_file = Path(vocab_file)
    tokenizer = Tokenizer(WordPiece.from_file(str(vocab_file), unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=lowercase
    )
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = _bert_template(tokenizer)
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    present = [t for t in SPECIALS if tokenizer.token_to_id(t) is not None]
    tokenizer.add_special_tokens(present)
    return tokenizer


def load_tokenizer(path: str | Path) -> Any:
    """A ``tokenizers.Tokenizer`` from ``tokenizer.json`` or a WordPiece ``vocab.txt``.

    ``path`` is a folder holding either file (``tokenizer.json`` preferred), or the file
    itself. For a ``vocab.txt`` the lower-casing follows a ``tokenizer_config.json`` beside it
    (``do_lower_case``, default True).
    """
    from tokenizers import Tokenizer

    if not isinstance(path, (str, Path)):
        raise ArgumentTypeError(f"path must be a str or Path, got {type(path).__name__}")
    p = Path(path)
    if p.is_file():
        folder, files = p.parent, [p]
    elif p.is_dir():
        folder, files = p, [p / "tokenizer.json", p / "vocab.txt"]
    else:
        raise ArgumentError(f"tokenizer path {str(p)!r} does not exist")
    for f in files:
        if not f.is_file():
            continue
        if f.suffix == ".json":
            try:
                return Tokenizer.from_file(str(f))
            except Exception as exc:  # tokenizers raises its own Exception type
                raise ConfigError(f"{f}: not a tokenizers JSON file ({exc})") from None
        return wordpiece_from_vocab(f, lowercase=_lowercase_from_config(folder))
    raise ArgumentError(
        f"tokenizer folder {str(p)!r} has neither tokenizer.json nor vocab.txt"
    )


def word_level_tokenizer(
    words: Iterable[str],
    *,
    specials: Sequence[str] = SPECIALS,
    lowercase: bool = True,
) -> Any:
    """A word-level ``tokenizers.Tokenizer``: specials get ids 0.. in order, then ``words``.

    Whitespace pre-tokeniser, ``[UNK]`` for unknown words, ``[CLS] x [SEP]`` template (when
    both are among ``specials``). Duplicate words are kept once, in first-seen order.
    """
    from tokenizers import Tokenizer, normalizers, pre_tokenizers
    from tokenizers.models import WordLevel

    if isinstance(words, str):
        raise ArgumentTypeError("words must be an iterable of words, got one str")
    specials = list(specials)
    if "[UNK]" not in specials:
        raise ConfigError(f"specials must include [UNK] for unknown words, got {specials}")
    vocab: dict[str, int] = {}
    for token in specials:
        vocab.setdefault(token, len(vocab))
    for w in words:
        if not isinstance(w, str) or not w or any(c.isspace() for c in w):
            raise ArgumentError(f"each word must be a non-empty str without spaces, got {w!r}")
        vocab.setdefault(w.lower() if lowercase else w, len(vocab))
    tokenizer = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    if lowercase:
        tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.add_special_tokens(specials)
    if "[CLS]" in specials and "[SEP]" in specials:
        tokenizer.post_processor = _bert_template(tokenizer)
    return tokenizer


def special_token_ids(tokenizer: Any) -> list[int]:
    """Ids of the tokenizer's special tokens ([PAD], [CLS], [SEP], [MASK], ...), sorted."""
    return sorted(i for i, tok in tokenizer.get_added_tokens_decoder().items() if tok.special)


def token_id(tokenizer: Any, token: str) -> int:
    """The id of ``token``, or a ``ConfigError`` naming it."""
    i = tokenizer.token_to_id(token)
    if i is None:
        raise ConfigError(f"the tokenizer has no token {token!r}")
    return int(i)


def encode_batch(
    tokenizer: Any,
    texts: Sequence[str],
    max_length: int,
    *,
    add_special_tokens: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Encode ``texts`` to (input_ids (B, L), attention_mask (B, L)), L = ``max_length``.

    Each text is truncated to ``max_length`` tokens (its [CLS] and [SEP] kept) and padded
    on the right with the tokenizer's pad token (its padding setting, else ``[PAD]``, else
    id 0). ``attention_mask`` is True on real tokens. The tokenizer's own truncation and
    padding settings are restored afterwards.
    """
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise ArgumentTypeError(f"texts must be a list of str, got {type(texts).__name__}")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise ArgumentTypeError(f"texts[{i}] must be a str, got {type(t).__name__}")
    check_int("max_length", max_length, minimum=1)
    if add_special_tokens and max_length < tokenizer.num_special_tokens_to_add(False):
        raise ArgumentError(
            f"max_length must leave room for the special tokens "
            f"({tokenizer.num_special_tokens_to_add(False)}), got {max_length}"
        )
    old_trunc, old_pad = tokenizer.truncation, tokenizer.padding
    pad = dict(old_pad) if old_pad else {}
    pad_token = pad.get("pad_token", "[PAD]")
    pad_id = pad.get("pad_id", tokenizer.token_to_id(pad_token))
    pad_id = 0 if pad_id is None else int(pad_id)
    try:
        tokenizer.enable_truncation(max_length=max_length)
        tokenizer.enable_padding(length=max_length, pad_id=pad_id, pad_token=pad_token)
        encodings = tokenizer.encode_batch(list(texts), add_special_tokens=add_special_tokens)
    finally:
        if old_trunc:
            tokenizer.enable_truncation(**old_trunc)
        else:
            tokenizer.no_truncation()
        if old_pad:
            tokenizer.enable_padding(**old_pad)
        else:
            tokenizer.no_padding()
    if not encodings:
        return torch.zeros(0, max_length, dtype=torch.long), torch.zeros(0, max_length, dtype=bool)
    ids = torch.tensor([e.ids for e in encodings], dtype=torch.long)
    mask = torch.tensor([e.attention_mask for e in encodings], dtype=torch.bool)
    return ids, mask


__all__ = [
    "SPECIALS",
    "encode_batch",
    "load_tokenizer",
    "special_token_ids",
    "token_id",
    "word_level_tokenizer",
    "wordpiece_from_vocab",
]
