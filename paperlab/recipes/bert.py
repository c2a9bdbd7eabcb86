"""``bert``: masked-language-model pre-training of a small BERT (note D2).

By default the data are sentences of the synthetic grammar (``data/synthetic/corpus.py``) with
a word-level tokenizer; ``--set text_file=PATH`` trains on your own plain text instead (one
sentence per line, read by ``data/formats/text.py``; a ``.txt`` folder works too), tokenised by
``--set tokenizer=FOLDER`` (``tokenizer.json`` or a WordPiece ``vocab.txt``) or, without one,
by a word-level vocabulary of the file's ``max_vocab`` most frequent words. The last
``eval_sentences`` lines (or fresh grammar sentences) are held out.

Masking (80/10/10, ``mask_prob``) is drawn inside the loss from the global RNG, which the
trainer re-seeds from (seed, rank, step) every step, so a resumed run masks exactly as an
uninterrupted one. Evaluation: MLM accuracy on the held-out sentences under a fixed
masking, and the unigram baseline's (always the most frequent training token).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import TensorDataset

from paperlab.data.synthetic.corpus import grammar_sentences, grammar_words
from paperlab.errors import ConfigError
from paperlab.language.bert import (
    BertForMaskedLM,
    mask_tokens,
    mlm_accuracy,
    mlm_loss,
    special_tokens_mask,
)
from paperlab.language.tokenizer import (
    encode_batch,
    load_tokenizer,
    special_token_ids,
    token_id,
    word_level_tokenizer,
)
from paperlab.registry import export_recipe
from paperlab.training.trainer import Task, TrainConfig


@dataclass
class BertRecipeConfig(TrainConfig):
    """``bert`` settings: the shared training fields, the data and the model's size."""

    steps: int = 600
    batch_size: int = 64
    lr: float = 3e-3
    warmup: int = 60
    text_file: str = ""  # one sentence per line; "" = the synthetic grammar
    tokenizer: str = ""  # load_tokenizer path; "" = word-level from the data
    max_vocab: int = 30000
    max_length: int = 16
    train_sentences: int = 20000  # synthetic grammar only
    eval_sentences: int = 1000
    mask_prob: float = 0.15
    hidden_size: int = 64
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    intermediate_size: int = 128
    dropout: float = 0.0
    init_std: float = 0.1  # BERT uses 0.02; a model this small then plateaus (bert-mlm)

    def validate(self) -> None:
        super().validate()
        if not 0.0 < self.mask_prob < 1.0:
            raise ConfigError(f"mask_prob must be in (0, 1), got {self.mask_prob}")
        for name in ("max_length", "eval_sentences", "train_sentences", "max_vocab"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")


def _text_data(cfg: BertRecipeConfig) -> tuple[list[str], list[str], object]:
    """(train lines, held-out lines, tokenizer) from ``cfg.text_file``."""
    from paperlab.data.formats.text import TextLinesDataset

    lines = TextLinesDataset(cfg.text_file).lines
    if len(lines) <= cfg.eval_sentences:
        raise ConfigError(
            f"{cfg.text_file!r} has {len(lines)} lines; need more than eval_sentences="
            f"{cfg.eval_sentences} (the last ones are held out)"
        )
    train, held = lines[: -cfg.eval_sentences], lines[-cfg.eval_sentences :]
    if cfg.tokenizer:
        tok = load_tokenizer(cfg.tokenizer)
    else:
        counts = Counter(w.lower() for line in train for w in line.split())
        tok = word_level_tokenizer([w for w, _ in counts.most_common(cfg.max_vocab)])
    return train, held, tok


@export_recipe("bert", config=BertRecipeConfig)
def bert_recipe(cfg: BertRecipeConfig) -> Task:
    """MLM on the synthetic grammar (or ``text_file``); evaluation: held-out MLM accuracy."""
    if cfg.text_file:
        train_text, eval_text, tok = _text_data(cfg)
    else:
        tok = load_tokenizer(cfg.tokenizer) if cfg.tokenizer else word_level_tokenizer(
            grammar_words()
        )
        eval_text = grammar_sentences(cfg.eval_sentences, seed=cfg.seed * 7 + 1)
        train_text = grammar_sentences(cfg.train_sentences, seed=cfg.seed * 7 + 2,
                                       exclude=eval_text)
    vocab, mask_id = tok.get_vocab_size(), token_id(tok, "[MASK]")
    specials = special_token_ids(tok)
    ids, att = encode_batch(tok, train_text, cfg.max_length)
    eval_ids, eval_att = encode_batch(tok, eval_text, cfg.max_length)
    model = BertForMaskedLM(
        vocab_size=vocab, hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads, intermediate_size=cfg.intermediate_size,
        max_position_embeddings=cfg.max_length, hidden_dropout_prob=cfg.dropout,
        attention_probs_dropout_prob=cfg.dropout, initializer_range=cfg.init_std,
        pad_token_id=tok.token_to_id("[PAD]") or 0,
    )  # fmt: skip

    real = ids[~special_tokens_mask(ids, specials)]
    unigram = int(torch.bincount(real, minlength=vocab).argmax())  # the baseline's one guess

    def loss(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]):
        x, am = batch
        xm, labels = mask_tokens(x, special_tokens_mask(x, specials), vocab,
                                 mask_token_id=mask_id, p=cfg.mask_prob)
        logits = model(xm, am)
        return mlm_loss(logits, labels), {"mlm_accuracy": mlm_accuracy(logits, labels)}

    def evaluate(model: nn.Module) -> dict[str, float]:
        device = next(model.parameters()).device
        g = torch.Generator().manual_seed(cfg.seed + 12345)
        hits = total = base = 0
        for start in range(0, len(eval_ids), 256):
            x, am = eval_ids[start : start + 256], eval_att[start : start + 256]
            xm, labels = mask_tokens(x, special_tokens_mask(x, specials), vocab,
                                     mask_token_id=mask_id, p=cfg.mask_prob, generator=g)
            pred = model(xm.to(device), am.to(device)).argmax(-1).cpu()
            keep = labels != -100
            hits += int((pred[keep] == labels[keep]).sum())
            total += int(keep.sum())
            base += int((labels[keep] == unigram).sum())
        n = max(total, 1)
        return {"mlm_accuracy": hits / n, "unigram_accuracy": base / n,
                "masked_tokens": float(total)}

    return Task(model=model, train_set=TensorDataset(ids, att), loss=loss, evaluate=evaluate)
