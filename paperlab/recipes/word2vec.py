"""``word2vec``: train Word2Vec on a text file (or a shipped corpus), write word2vec-format vectors.

``paperlab train word2vec --set data=corpus.txt --set sg=1 ...`` streams ``data`` (one
sentence per line, whitespace-separated tokens), trains ``paperlab.language.word2vec.Word2Vec``
with the gensim-named settings below, and writes to ``out`` (default ``runs/train/word2vec``):

- ``vectors.txt`` (or ``vectors.bin`` with ``binary=true``): word2vec.c's format, which
  gensim's ``KeyedVectors.load_word2vec_format`` reads;
- ``model.safetensors`` and ``model.safetensors.json``: the whole model, for ``Word2Vec.load``
  and further ``train`` calls;
- ``metrics.json``: corpus and vocabulary sizes, words/s, and the evaluations that apply
  (wordsim353 Spearman and questions-words accuracy when gensim's test data is installed;
  the planted-analogy accuracy on the synthetic corpus).

Without ``data``, ``corpus`` chooses: ``head500`` (gensim's ``head500.noblanks.cor.bz2``,
about 331k tokens) or ``lee`` (``lee_background.cor``, about 60k) from the gensim wheel, or
``synthetic`` (``paperlab.data.synthetic.analogies``, core only). ``auto`` is head500 when
gensim is installed; without gensim it stops with one line saying what to pass.

Word2Vec is not trained by gradient descent with an optimizer, so this recipe runs its own
loop (``own_loop=True``: ``paperlab train`` calls it instead of the shared Trainer).
"""

from __future__ import annotations

import bz2
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from paperlab.config import Config
from paperlab.errors import ConfigError, MissingExtraError, require
from paperlab.registry import export_recipe

CORPORA = ("auto", "head500", "lee", "synthetic")


@dataclass
class Word2VecRecipeConfig(Config):
    """gensim's Word2Vec settings plus where the corpus comes from and where results go."""

    data: str = ""  # a text file, one sentence per line; empty: see ``corpus``
    corpus: str = "auto"  # auto | head500 | lee | synthetic (used when data is empty)
    vector_size: int = 100
    window: int = 5
    min_count: int = 5
    sg: int = 0
    hs: int = 0
    negative: int = 5
    ns_exponent: float = 0.75
    cbow_mean: int = 1
    sample: float = 1e-3
    alpha: float = 0.025
    min_alpha: float = 1e-4
    epochs: int = 5
    seed: int = 1
    workers: int = 3
    binary: bool = False
    synthetic_sentences: int = 20000
    out: str = ""
    progress: bool = True

    def validate(self) -> None:
        if self.corpus not in CORPORA:
            raise ConfigError(f"corpus must be one of {', '.join(CORPORA)}, got {self.corpus!r}")
        if self.data and not Path(self.data).is_file():
            raise ConfigError(f"data={self.data!r} is not a file (one sentence per line)")
        if self.synthetic_sentences < 1:
            raise ConfigError(f"synthetic_sentences must be >= 1, got {self.synthetic_sentences}")


def _gensim_datapath(name: str) -> str | None:
    try:  # the test extra: corpora shipped in the gensim wheel
        utils = require("gensim.test.utils", extra="test", purpose="gensim's shipped corpora")
    except MissingExtraError:
        return None
    return utils.datapath(name)


class _TextLines:
    """A re-iterable over a (possibly bz2) text file's lines as token lists."""

    def __init__(self, path: str, lower_words: bool = False) -> None:
        self.path, self.lower_words = path, lower_words

    def __iter__(self) -> Iterator[list[str]]:
        opener = bz2.open if self.path.endswith(".bz2") else open
        with opener(self.path, "rt", encoding="utf8", errors="replace") as f:
            for line in f:
                if self.lower_words:  # close to gensim's simple_preprocess
                    yield re.findall(r"[a-z]{2,15}", line.lower())
                else:
                    yield line.split()


def _corpus(cfg: Word2VecRecipeConfig) -> tuple[str, dict[str, Any], Any]:
    """(name, Word2Vec corpus keyword, synthetic corpus or None)."""
    if cfg.data:
        return cfg.data, {"corpus_file": cfg.data}, None
    choice = cfg.corpus
    if choice == "auto":
        choice = "head500" if _gensim_datapath("head500.noblanks.cor.bz2") else ""
        if not choice:
            raise ConfigError(
                "no corpus: pass --set data=corpus.txt (one sentence per line), or "
                "--set corpus=synthetic, or pip install 'paperlab[test]' for gensim's corpora"
            )
    if choice == "synthetic":
        from paperlab.data.synthetic.analogies import analogy_corpus

        synthetic = analogy_corpus(cfg.synthetic_sentences, seed=cfg.seed)
        return "synthetic analogies", {"sentences": synthetic.sentences}, synthetic
    name = "head500.noblanks.cor.bz2" if choice == "head500" else "lee_background.cor"
    path = _gensim_datapath(name)
    if path is None:
        raise ConfigError(f"corpus={choice} needs gensim's test data: pip install 'paperlab[test]'")
    return name, {"sentences": _TextLines(path, lower_words=choice == "lee")}, None


def _evaluate(model: Any, synthetic: Any, out: Path) -> dict[str, float]:
    metrics: dict[str, float] = {}
    if synthetic is not None:
        from paperlab.data.synthetic.analogies import write_questions

        questions = write_questions(synthetic.sections, out / "planted_questions.txt")
        metrics["planted_analogy_accuracy"] = model.wv.evaluate_word_analogies(questions)[0]
        return metrics
    wordsim, questions = _gensim_datapath("wordsim353.tsv"), _gensim_datapath("questions-words.txt")
    if wordsim is not None:
        try:
            pearson, spearman, oov = model.wv.evaluate_word_pairs(wordsim)
            metrics.update(wordsim_spearman=spearman[0], wordsim_pearson=pearson[0],
                           wordsim_oov_percent=oov)  # fmt: skip
        except ValueError:  # no pair in the vocabulary
            pass
        metrics["analogy_accuracy"] = model.wv.evaluate_word_analogies(questions)[0]
    return metrics


@export_recipe("word2vec", config=Word2VecRecipeConfig, own_loop=True, note="D1")
def word2vec(cfg: Word2VecRecipeConfig, device: str | None = None) -> int:
    """Train Word2Vec and write vectors (word2vec format), the model and metrics; returns 0."""
    from rich.console import Console

    from paperlab.language.word2vec import Word2Vec

    cfg.validate()
    name, corpus, synthetic = _corpus(cfg)
    out = Path(cfg.out or "runs/train/word2vec")
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps({"recipe": "word2vec", **cfg.to_dict()}, indent=2))
    keys = ("vector_size", "window", "min_count", "sg", "hs", "negative", "ns_exponent",
            "cbow_mean", "sample", "alpha", "min_alpha", "epochs", "seed", "workers")  # fmt: skip
    params = {k: getattr(cfg, k) for k in keys}
    model = Word2Vec(**params, device=device or "cpu", progress=cfg.progress)
    sentences = corpus.get("sentences")
    model.build_vocab(sentences, corpus_file=corpus.get("corpus_file"))
    start = time.perf_counter()
    effective, raw = model.train(
        sentences, corpus_file=corpus.get("corpus_file"), compute_loss=True
    )
    seconds = time.perf_counter() - start
    vectors = out / ("vectors.bin" if cfg.binary else "vectors.txt")
    model.wv.save_word2vec_format(vectors, binary=cfg.binary)
    model.save(out / "model.safetensors")
    metrics = {
        "corpus": name,
        "sentences": model.corpus_count,
        "words_per_epoch": model.corpus_total_words,
        "vocabulary": len(model.wv),
        "trained_words": raw,
        "effective_words": effective,
        "seconds": seconds,
        "words_per_second": raw / max(seconds, 1e-9),
        "loss_per_effective_word": model.running_training_loss / max(effective, 1),
        **_evaluate(model, synthetic, out),
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    console = Console()
    evals = "  ".join(
        f"{k} {v:.4f}" for k, v in metrics.items() if k.endswith(("accuracy", "spearman"))
    )
    console.print(
        f"word2vec on {name}: {len(model.wv)} words x {cfg.vector_size}, {raw:,} words in "
        f"{seconds:.1f} s ({metrics['words_per_second']:,.0f} words/s)  {evals}"
    )
    console.print(f"vectors: {vectors}")
    console.print(f"metrics: {out / 'metrics.json'}")
    return 0
