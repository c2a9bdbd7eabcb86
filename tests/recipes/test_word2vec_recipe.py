"""D1 recipe ``word2vec``: ``paperlab train word2vec`` writes word2vec-format vectors + metrics."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import require

from paperlab import registry
from paperlab.cli import main
from paperlab.data.synthetic.analogies import analogy_corpus, write_corpus
from paperlab.language.keyed_vectors import KeyedVectors
from paperlab.language.word2vec import Word2Vec
from paperlab.recipes import word2vec as recipe


def test_registered_with_its_own_loop():
    entry = registry.get("recipe", "word2vec")
    assert entry.meta["own_loop"] and entry.meta["config"] is recipe.Word2VecRecipeConfig


def test_train_on_a_text_file_writes_vectors_model_and_metrics(tmp_path, capsys):
    corpus = analogy_corpus(3000, seed=5)
    data = write_corpus(corpus.sentences, tmp_path / "corpus.txt")
    out = tmp_path / "run"
    code = main(["train", "word2vec", "--set", f"data={data}", "--set", "sg=1",
                 "--set", "min_count=1", "--set", "epochs=2", "--set", "vector_size=24",
                 "--set", "workers=1", "--out", str(out), "--no-progress"])  # fmt: skip
    assert code == 0
    assert "words/s" in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["trained_words"] == 2 * corpus.n_words and metrics["vocabulary"] > 300
    kv = KeyedVectors.load_word2vec_format(out / "vectors.txt")
    model = Word2Vec.load(out / "model.safetensors")
    np.testing.assert_allclose(kv.vectors, model.wv.vectors, atol=1e-6)
    assert model.sg == 1 and kv.vector_size == 24
    gensim_kv = require("gensim.models.keyedvectors")
    theirs = gensim_kv.KeyedVectors.load_word2vec_format(str(out / "vectors.txt"))
    assert theirs.index_to_key == kv.index_to_key


def test_synthetic_corpus_binary_vectors_and_planted_accuracy(tmp_path):
    out = tmp_path / "syn"
    code = main(["train", "word2vec", "--set", "corpus=synthetic", "--set", "binary=true",
                 "--set", "min_count=1", "--set", "synthetic_sentences=8000", "--set", "sg=1",
                 "--set", "vector_size=40", "--set", "workers=1", "--out", str(out),
                 "--no-progress"])  # fmt: skip
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["planted_analogy_accuracy"] > 0.8
    kv = KeyedVectors.load_word2vec_format(out / "vectors.bin", binary=True)
    assert "paris" in kv


def test_without_gensim_and_without_data_one_line_says_what_to_pass(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(recipe, "_gensim_datapath", lambda name: None)
    code = main(["train", "word2vec", "--out", str(tmp_path / "x"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code != 0 and len(err.splitlines()) == 1
    assert "data=" in err and "corpus=synthetic" in err and "paperlab[test]" in err


def test_bad_settings_name_the_key(tmp_path, capsys):
    assert main(["train", "word2vec", "--set", "data=/no/such/file.txt"]) != 0
    assert "data=" in capsys.readouterr().err
    assert main(["train", "word2vec", "--set", "corpus=wiki"]) != 0
    assert "corpus must be one of" in capsys.readouterr().err
    corpus = tmp_path / "c.txt"
    corpus.write_text("a b c\n")
    code = main(["train", "word2vec", "--set", f"data={corpus}", "--set", "window=0",
                 "--out", str(tmp_path / "o"), "--no-progress"])  # fmt: skip
    assert code != 0 and "window" in capsys.readouterr().err


@pytest.mark.slow
def test_default_corpus_is_gensims_head500(tmp_path):
    require("gensim")
    out = tmp_path / "h"
    code = main(["train", "word2vec", "--set", "epochs=1", "--set", "workers=1",
                 "--out", str(out), "--no-progress"])  # fmt: skip
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["corpus"] == "head500.noblanks.cor.bz2" and "wordsim_spearman" in metrics
