"""The ``bert`` recipe trains through the Trainer on the grammar and on a plain-text file."""

from __future__ import annotations

import json

import pytest

from paperlab import registry
from paperlab.data.synthetic.corpus import grammar_sentences
from paperlab.errors import ConfigError
from paperlab.recipes.bert import BertRecipeConfig
from paperlab.training.trainer import train

pytestmark = pytest.mark.note("D2")


def _cfg(tmp_path, **kw) -> BertRecipeConfig:
    base = dict(steps=250, batch_size=32, warmup=6, train_sentences=1500, eval_sentences=500,
                hidden_size=32, intermediate_size=64, progress=False, out=str(tmp_path / "run"))
    return BertRecipeConfig(**{**base, **kw})


def _losses(out) -> list[float]:
    return [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_bert_recipe_learns_the_grammar(tmp_path):
    assert registry.get("recipe", "bert").meta["config"] is BertRecipeConfig
    summary = train("bert", _cfg(tmp_path))
    assert summary.step == 250 and summary.checkpoint is not None
    losses = _losses(summary.out)
    assert sum(losses[-10:]) / 10 < 0.7 * sum(losses[:10]) / 10
    ev = summary.eval  # a unigram guess scores about 0.05 on the grammar's masked tokens
    assert ev["masked_tokens"] > 300 and ev["unigram_accuracy"] < 0.1
    assert ev["mlm_accuracy"] > 2 * ev["unigram_accuracy"] + 0.02


def test_bert_recipe_reads_a_text_file(tmp_path):
    text = tmp_path / "corpus.txt"
    text.write_text("\n".join(grammar_sentences(600, seed=9)) + "\n\n")
    summary = train("bert", _cfg(tmp_path, text_file=str(text), steps=8, eval_sentences=100))
    assert summary.step == 8 and 0.0 <= summary.eval["mlm_accuracy"] <= 1.0
    with pytest.raises(ConfigError, match="need more than eval_sentences"):
        train("bert", _cfg(tmp_path, text_file=str(text), eval_sentences=5000))
    with pytest.raises(ConfigError, match="mask_prob"):
        train("bert", _cfg(tmp_path, mask_prob=0.0))
