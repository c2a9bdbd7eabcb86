"""D1 KeyedVectors: gensim interop both ways (files, queries, evaluations), malformed files."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import require

from paperlab.errors import ArgumentError
from paperlab.language.keyed_vectors import KeyedVectors, VectorsFileError

pytestmark = pytest.mark.note("D1")


@pytest.fixture(scope="module")
def gensim_model():
    """Vectors trained by gensim on its shipped Lee corpus (small and quick)."""
    word2vec = require("gensim.models.word2vec")
    utils = require("gensim.utils")
    test_utils = require("gensim.test.utils")
    with open(test_utils.datapath("lee_background.cor")) as f:
        sentences = [utils.simple_preprocess(line) for line in f]
    return word2vec.Word2Vec(
        sentences, vector_size=32, min_count=2, epochs=3, workers=1, seed=3, sg=0
    )


@pytest.fixture(scope="module")
def data():
    test_utils = require("gensim.test.utils")
    return test_utils.datapath("questions-words.txt"), test_utils.datapath("wordsim353.tsv")


@pytest.fixture(scope="module", params=[False, True], ids=["text", "binary"])
def loaded(request, gensim_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("kv") / f"vectors.{'bin' if request.param else 'txt'}"
    gensim_model.wv.save_word2vec_format(str(path), binary=request.param)
    return KeyedVectors.load_word2vec_format(path, binary=request.param), request.param


def _same_lists(ours, theirs, tol=1e-6):
    assert [w for w, _ in ours] == [w for w, _ in theirs]
    np.testing.assert_allclose([s for _, s in ours], [s for _, s in theirs], atol=tol, rtol=0)


def test_loaded_vectors_equal_gensim(loaded, gensim_model):
    kv, binary = loaded
    g = gensim_model.wv
    assert kv.index_to_key == g.index_to_key
    tol = 0 if binary else 1e-7  # text: shortest float32 repr round-trips exactly
    np.testing.assert_allclose(kv.vectors, g.vectors, atol=tol, rtol=0)
    assert kv["government"].shape == (32,)
    assert kv[["government", "attacks"]].shape == (2, 32)


def test_most_similar_equals_gensim(loaded, gensim_model):
    kv, _ = loaded
    g = gensim_model.wv
    for word in ("attacks", "government", "police", "australia"):
        _same_lists(kv.most_similar(word, topn=20), g.most_similar(word, topn=20))
        _same_lists(
            kv.most_similar([word], topn=20, restrict_vocab=500),
            g.most_similar([word], topn=20, restrict_vocab=500),
        )
    _same_lists(
        kv.most_similar(positive=["police", "australia"], negative=["government"]),
        g.most_similar(positive=["police", "australia"], negative=["government"]),
    )
    _same_lists(kv.most_similar([kv["attacks"]], topn=15), g.most_similar([g["attacks"]], topn=15))
    _same_lists(
        kv.most_similar([("police", 2.0), "fire"]), g.most_similar([("police", 2.0), "fire"])
    )
    _same_lists(
        kv.most_similar_cosmul(positive=["police", "australia"], negative=["government"]),
        g.most_similar_cosmul(positive=["police", "australia"], negative=["government"]),
    )
    assert kv.similarity("police", "fire") == pytest.approx(
        float(g.similarity("police", "fire")), abs=1e-6
    )
    words = ["police", "fire", "government", "breakfast"]
    assert kv.doesnt_match(words) == g.doesnt_match(words)
    np.testing.assert_allclose(
        kv.most_similar("police", topn=None), g.most_similar("police", topn=None), atol=1e-6
    )


def test_evaluations_equal_gensim(loaded, gensim_model, data):
    kv, _ = loaded
    g = gensim_model.wv
    questions, wordsim = data
    ours_score, ours_sections = kv.evaluate_word_analogies(questions)
    theirs_score, theirs_sections = g.evaluate_word_analogies(questions)
    assert ours_score == theirs_score
    assert len(ours_sections) == len(theirs_sections)
    for a, b in zip(ours_sections, theirs_sections, strict=True):
        assert a == b
    assert len(ours_sections[-1]["correct"]) + len(ours_sections[-1]["incorrect"]) > 50
    restricted = kv.evaluate_word_analogies(questions, restrict_vocab=2000)
    assert restricted == g.evaluate_word_analogies(questions, restrict_vocab=2000)

    pearson, spearman, oov = kv.evaluate_word_pairs(wordsim)
    g_pearson, g_spearman, g_oov = g.evaluate_word_pairs(wordsim)
    assert pearson[0] == pytest.approx(g_pearson[0], abs=1e-6)
    assert spearman[0] == pytest.approx(g_spearman[0], abs=1e-6)
    assert pearson[1] == pytest.approx(g_pearson[1], rel=1e-4)
    assert oov == g_oov


@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
def test_our_files_load_in_gensim(binary, tmp_path):
    gensim_kv = require("gensim.models.keyedvectors")
    rng = np.random.default_rng(0)
    keys = ["the", "of", "ünïcode", "word2vec", "x"]
    kv = KeyedVectors.from_vectors(keys, rng.standard_normal((5, 7)).astype(np.float32))
    path = tmp_path / "ours.w2v"
    kv.save_word2vec_format(path, binary=binary)
    theirs = gensim_kv.KeyedVectors.load_word2vec_format(str(path), binary=binary)
    assert theirs.index_to_key == keys
    np.testing.assert_array_equal(theirs.vectors, kv.vectors)
    again = KeyedVectors.load_word2vec_format(path, binary=binary)
    np.testing.assert_array_equal(again.vectors, kv.vectors)
    _same_lists(kv.most_similar("the", topn=4), theirs.most_similar("the", topn=4))


def test_unknown_word_raises_key_error_naming_it():
    kv = KeyedVectors.from_vectors(["a", "b"], np.eye(2))
    with pytest.raises(KeyError, match="zebra"):
        kv["zebra"]
    with pytest.raises(KeyError, match="zebra"):
        kv.most_similar("zebra")
    with pytest.raises(KeyError, match="zebra"):
        kv.similarity("a", "zebra")
    with pytest.raises(ArgumentError, match="positive"):
        kv.most_similar()
    with pytest.raises(ArgumentError, match="vectors"):
        KeyedVectors.from_vectors(["a"], np.eye(2))


@pytest.mark.parametrize(
    "content, binary, line, message",
    [
        (b"two 3\n", False, 1, "header"),
        (b"2\n", False, 1, "header"),
        (b"2 3\na 1 2 3\nb 1 2\n", False, 3, "got 2 values"),
        (b"2 3\na 1 2 3\nb 1 x 3\n", False, 3, "not a float"),
        (b"3 3\na 1 2 3\nb 1 2 3\n", False, 4, "ends after 2 of 3"),
        (
            b"2 2\na " + np.float32([1, 2]).tobytes() + b"\nb " + b"\x00\x00",
            True,
            3,
            "ends after 1",
        ),
        (b"1 2\na " + np.float32([np.nan, 2]).tobytes(), True, 2, "not finite"),
    ],
)
def test_malformed_files_name_file_and_line(tmp_path, content, binary, line, message):
    path = tmp_path / "bad.vec"
    path.write_bytes(content)
    with pytest.raises(VectorsFileError, match=message) as info:
        KeyedVectors.load_word2vec_format(path, binary=binary)
    assert str(path) in str(info.value) and f"line {line}" in str(info.value)
    assert info.value.line == line


def test_duplicate_word_keeps_first_and_limit(tmp_path):
    path = tmp_path / "dup.txt"
    path.write_text("3 2\na 1 0\na 0 1\nb 1 1\n")
    kv = KeyedVectors.load_word2vec_format(path)
    assert kv.index_to_key == ["a", "b"]
    np.testing.assert_array_equal(kv["a"], [1, 0])
    assert KeyedVectors.load_word2vec_format(path, limit=1).index_to_key == ["a"]
