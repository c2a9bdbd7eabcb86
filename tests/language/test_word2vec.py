"""D1 Word2Vec: gensim's formulas, word2vec.c's updates (float64 transcriptions), quality on
gensim's shipped corpora beside gensim, save/load, streaming, bad input."""

from __future__ import annotations

import math
import os
import threading

import numpy as np
import pytest
import torch
from conftest import require

from paperlab.algorithms.huffman import huffman_tree
from paperlab.errors import ArgumentError, ArgumentTypeError
from paperlab.language import word2vec as word2vec_module
from paperlab.language import word2vec_workers
from paperlab.language.word2vec import (
    Word2Vec,
    hs_update,
    keep_probabilities,
    noise_distribution,
    ns_update,
    padded_tree,
    reduced_windows,
)
from paperlab.language.word2vec_batch import (
    AliasSampler,
    Workspace,
    output_step,
    row_scale,
)

pytestmark = pytest.mark.note("D1", reference="gensim formulas; word2vec.c updates (float64)")

# --------------------------------------------------------------- float64 word2vec.c, by hand


def _sigmoid(f: float) -> float:
    return 1.0 / (1.0 + math.exp(-f))


def _c_sg_neg(syn0, syn1neg, word, last_word, negatives, alpha):
    """word2vec.c's skip-gram negative-sampling step for one (word, context) pair."""
    l1 = last_word
    neu1e = np.zeros(syn0.shape[1])
    for d in range(len(negatives) + 1):
        if d == 0:
            target, label = word, 1.0
        else:
            target, label = negatives[d - 1], 0.0
            if target == word:
                continue
        f = float(syn0[l1] @ syn1neg[target])
        if f > 6:
            g = (label - 1) * alpha
        elif f < -6:
            g = (label - 0) * alpha
        else:
            g = (label - _sigmoid(f)) * alpha
        neu1e += g * syn1neg[target]
        syn1neg[target] += g * syn0[l1]
    syn0[l1] += neu1e


def _c_sg_hs(syn0, syn1, last_word, code, point, alpha):
    """word2vec.c's skip-gram hierarchical-softmax step for one pair."""
    l1 = last_word
    neu1e = np.zeros(syn0.shape[1])
    for d in range(len(code)):
        l2 = point[d]
        f = float(syn0[l1] @ syn1[l2])
        if f <= -6 or f >= 6:
            continue
        g = (1 - code[d] - _sigmoid(f)) * alpha
        neu1e += g * syn1[l2]
        syn1[l2] += g * syn0[l1]
    syn0[l1] += neu1e


@pytest.mark.parametrize(
    "scale, negatives",
    [(0.3, [5, 3, 0, 9]), (4.0, [5, 3, 0, 9]), (0.3, [])],  # negative 3 == target: skipped
    ids=["inside", "clipped", "target-only"],  # target-only: the products for one row
)
def test_one_negative_sampling_update_equals_word2vec_c(scale, negatives):
    rng = np.random.default_rng(0)
    v, d = 12, 8
    syn0 = rng.standard_normal((v, d)) * scale
    syn1neg = rng.standard_normal((v, d)) * scale
    word, context, alpha = 3, 7, 0.025
    ref0, ref1 = syn0.copy(), syn1neg.copy()
    _c_sg_neg(ref0, ref1, word, context, negatives, alpha)

    w0, w1 = torch.tensor(syn0), torch.tensor(syn1neg)
    negs = torch.tensor(negatives, dtype=torch.long).view(1, -1)
    neu1e, loss = ns_update(w0[[context]], torch.tensor([word]), negs, w1, alpha)
    w0.index_add_(0, torch.tensor([context]), neu1e)
    np.testing.assert_allclose(w0.numpy(), ref0, atol=1e-12, rtol=0)
    np.testing.assert_allclose(w1.numpy(), ref1, atol=1e-12, rtol=0)
    f = [float(syn0[context] @ syn1neg[t]) for t in [word] + [n for n in negatives if n != word]]
    expect = -math.log(_sigmoid(f[0])) - sum(math.log(_sigmoid(-x)) for x in f[1:])
    assert float(loss) == pytest.approx(expect, rel=1e-10)


@pytest.mark.parametrize("scale", [0.3, 3.0], ids=["inside", "skipped"])
def test_one_hierarchical_softmax_update_equals_word2vec_c(scale):
    rng = np.random.default_rng(1)
    counts = [40, 30, 9, 8, 5, 3, 2, 1]
    codes, points = huffman_tree(counts)
    v, d = len(counts), 8
    syn0 = rng.standard_normal((v, d)) * scale
    syn1 = rng.standard_normal((v - 1, d)) * scale
    tree = padded_tree(codes, points)
    for word, context in ((7, 2), (0, 5), (3, 3)):
        ref0, ref1 = syn0.copy(), syn1.copy()
        _c_sg_hs(ref0, ref1, context, codes[word], points[word], 0.05)
        w0, w1 = torch.tensor(syn0), torch.tensor(syn1)
        neu1e, _ = hs_update(w0[[context]], torch.tensor([word]), tree, w1, 0.05)
        w0.index_add_(0, torch.tensor([context]), neu1e)
        np.testing.assert_allclose(w0.numpy(), ref0, atol=1e-12, rtol=0)
        np.testing.assert_allclose(w1.numpy(), ref1, atol=1e-12, rtol=0)


def test_grouped_update_is_the_sum_of_pair_updates_from_the_same_weights():
    """Hogwild within a batch: every pair reads the old weights, the updates add up."""
    rng = np.random.default_rng(2)
    v, d, n, m, k = 20, 6, 5, 4, 3
    syn0, syn1 = rng.standard_normal((v, d)) * 0.5, rng.standard_normal((v, d)) * 0.5
    inputs = rng.integers(0, v, (n, m))
    mask = rng.random((n, m)) < 0.7
    targets, negatives = rng.integers(0, v, n), rng.integers(0, v, (n, k))
    w1 = torch.tensor(syn1)
    neu1e, _ = ns_update(torch.tensor(syn0[inputs]), torch.tensor(targets),
                         torch.tensor(negatives), w1, 0.1, torch.tensor(mask))  # fmt: skip
    expect_out, expect_in = syn1.copy(), np.zeros((n, m, d))
    for i in range(n):
        for j in range(m):
            if not mask[i, j]:
                continue
            one = torch.tensor(syn1)
            e, _ = ns_update(torch.tensor(syn0[[inputs[i, j]]]), torch.tensor([targets[i]]),
                             torch.tensor(negatives[i][None]), one, 0.1)  # fmt: skip
            expect_out += one.numpy() - syn1
            expect_in[i, j] = e[0].numpy()
    np.testing.assert_allclose(w1.numpy(), expect_out, atol=1e-12)
    np.testing.assert_allclose(neu1e.numpy() * mask[..., None], expect_in, atol=1e-12)


def test_shared_negatives_update_is_the_sum_of_each_centres_update():
    """CBOW's groups: G centres meet the same K negative rows (valid per centre and row, so a
    negative equal to one centre's target is skipped for that centre only); the update is the
    sum of each centre's own negative-sampling update with those negatives, from the same
    weights."""
    rng = np.random.default_rng(3)
    v, d, groups, share, k = 15, 6, 3, 4, 5
    syn1 = rng.standard_normal((v, d)) * 0.5
    h = rng.standard_normal((groups, share, d)) * 0.5
    targets = rng.integers(0, v, (groups, share))
    negatives = rng.integers(0, v, (groups, k))
    negatives[0, 1] = targets[0, 2]  # skipped for centre (0, 2), counted for the others
    w1 = torch.tensor(syn1)
    valid = torch.tensor(negatives[:, None, :] != targets[:, :, None])
    label = torch.zeros(1, 1, dtype=torch.float64).expand(groups, k)
    neu1e, _ = output_step(torch.tensor(h), None, torch.tensor(negatives), label, valid, w1,
                           0.1, False, False, None, Workspace())  # fmt: skip
    expect_out, expect_in = syn1.copy(), np.zeros((groups, share, d))
    for i in range(groups):
        for j in range(share):
            one = torch.tensor(syn1)
            keep = valid[i, j][None]
            e, _ = output_step(torch.tensor(h[i, j][None, None]), None,
                               torch.tensor(negatives[i][None]), label[:1], keep, one, 0.1,
                               False, False, None, Workspace())  # fmt: skip
            expect_out += one.numpy() - syn1
            expect_in[i, j] = e[0, 0].numpy()
    np.testing.assert_allclose(w1.numpy(), expect_out, atol=1e-12)
    np.testing.assert_allclose(neu1e.numpy(), expect_in, atol=1e-12)
    assert valid[0, 2, 1].item() is False  # the skipped pair was exercised


def test_cbow_groups_of_centres_share_one_draw_of_negatives(lee, monkeypatch):
    """CBOW draws K negatives per group of ``cbow_negative_share`` centres, skip-gram per centre."""
    shapes: list[tuple[int, ...]] = []
    draw = AliasSampler.draw

    def spy(self, shape, generator):
        shapes.append(tuple(shape))
        return draw(self, shape, generator)

    monkeypatch.setattr(AliasSampler, "draw", spy)
    kw = dict(min_count=2, vector_size=8, epochs=1, workers=1, negative=5, sample=0)
    Word2Vec(lee[:40], sg=0, **kw)
    cbow = list(shapes)
    shapes.clear()
    Word2Vec(lee[:40], sg=1, **kw)
    centres = sum(len(s) for s in lee[:40])  # every word of a sentence of 2+ known words
    share = Word2Vec.cbow_negative_share
    assert share > 1 and all(k == 5 for _, k in cbow + shapes)
    assert sum(n for n, _ in cbow) * share >= sum(n for n, _ in shapes)
    assert sum(n for n, _ in cbow) < sum(n for n, _ in shapes) / share + len(cbow)
    assert sum(n for n, _ in shapes) <= centres


def test_row_cap_scales_only_the_rows_above_it():
    rows = torch.tensor([0, 1, 1, 2, 2, 2, 2])
    assert row_scale(rows, 4, 4.0) is None and row_scale(rows, 4, None) is None
    assert row_scale(rows, 4, 2.0).tolist() == [1, 1, 1, 0.5, 0.5, 0.5, 0.5]
    pairs = torch.tensor([6.0, 1.0])  # the first entry carries 6 pair updates
    assert row_scale(torch.tensor([0, 1]), 2, 3.0, pairs).tolist() == [0.5, 1.0]
    ws = Workspace()  # the persistent count buffer gives the same, and is zero again after
    for _ in range(2):
        assert row_scale(rows, 4, 2.0, workspace=ws).tolist() == [1, 1, 1, 0.5, 0.5, 0.5, 0.5]
        assert row_scale(torch.tensor([0, 1]), 4, 3.0, pairs, ws).tolist() == [0.5, 1.0]
        assert row_scale(rows, 4, 4.0, workspace=ws) is None


def test_a_row_above_the_cap_gets_cap_times_the_mean_update():
    """40 groups share one target and one negative: those two rows take 8/40 of the sum."""
    rng = np.random.default_rng(4)
    v, d, n = 10, 6, 40
    h = torch.tensor(rng.standard_normal((n, d)) * 0.5)
    syn1 = torch.tensor(rng.standard_normal((v, d)) * 0.5)
    targets, negatives = torch.full((n,), 3), torch.full((n, 1), 5)
    summed, capped = syn1.clone(), syn1.clone()
    e_sum, _ = ns_update(h, targets, negatives, summed, 0.05)
    e_cap, _ = ns_update(h, targets, negatives, capped, 0.05, cap=8.0, workspace=Workspace())
    np.testing.assert_allclose((capped - syn1).numpy(), (summed - syn1).numpy() * 8 / 40,
                               atol=1e-12)  # fmt: skip
    np.testing.assert_allclose(e_cap.numpy(), e_sum.numpy(), atol=1e-12)  # inputs: uncapped


def test_reduced_windows_equal_a_loop():
    rng = np.random.default_rng(3)
    window = 3
    sentence = torch.tensor(np.repeat([0, 1, 2, 3], [5, 1, 7, 4]))
    reduced = torch.tensor(rng.integers(0, window, len(sentence)))
    pos, mask = reduced_windows(sentence, reduced, window)
    got = {
        (i, int(pos[i, c])) for i in range(len(sentence)) for c in range(2 * window) if mask[i, c]
    }
    expect = set()
    for i in range(len(sentence)):
        b = int(reduced[i])
        for j in range(i - window + b, i + window - b + 1):
            if j != i and 0 <= j < len(sentence) and sentence[j] == sentence[i]:
                expect.add((i, j))
    assert got == expect


# ------------------------------------------------------------------------ gensim's formulas


@pytest.fixture(scope="module")
def lee():
    utils, test_utils = require("gensim.utils"), require("gensim.test.utils")
    with open(test_utils.datapath("lee_background.cor")) as f:
        return [utils.simple_preprocess(line) for line in f]


def test_vocabulary_subsampling_and_noise_equal_gensim(lee):
    word2vec = require("gensim.models.word2vec")
    theirs = word2vec.Word2Vec(min_count=5, sample=1e-3, ns_exponent=0.75, workers=1)
    theirs.build_vocab(lee)
    ours = Word2Vec(min_count=5, sample=1e-3)
    ours.build_vocab(lee)
    assert sorted(ours.wv.index_to_key) == sorted(theirs.wv.index_to_key)
    counts = [theirs.wv.get_vecattr(w, "count") for w in ours.wv.index_to_key]
    assert list(ours.wv.counts) == counts  # ours sorted by descending count too
    assert all(np.diff(ours.wv.counts) <= 0)
    g_keep = np.array([theirs.wv.get_vecattr(w, "sample_int") for w in ours.wv.index_to_key])
    keep = keep_probabilities(ours.wv.counts, 1e-3)
    assert keep.min() < 0.2  # subsampling does something on this corpus
    np.testing.assert_allclose(keep * (2**32 - 1), g_keep, atol=1.0)
    order = [theirs.wv.key_to_index[w] for w in theirs.wv.index_to_key]
    g_counts = np.array([theirs.wv.get_vecattr(i, "count") for i in order])
    g_noise = np.diff(theirs.cum_table, prepend=0) / theirs.cum_table[-1]
    np.testing.assert_allclose(noise_distribution(g_counts, 0.75), g_noise, atol=2e-9)
    for exponent in (0.0, 1.0, -0.5):
        p = noise_distribution([4, 2, 1], exponent)
        np.testing.assert_allclose(
            p, np.array([4, 2, 1.0]) ** exponent / sum([4**exponent, 2**exponent, 1])
        )


def test_drawn_negatives_follow_the_noise_distribution(lee):
    model = Word2Vec(min_count=5)
    model.build_vocab(lee)
    draws = model._noise.draw((400_000,), model.generator)
    freq = np.bincount(draws.numpy(), minlength=len(model.wv)) / 400_000
    p = noise_distribution(model.wv.counts, 0.75)
    assert np.abs(freq[:20] - p[:20]).max() < 4 * np.sqrt(p[0] / 400_000)
    # the alias table itself encodes the distribution exactly (up to float32)
    np.testing.assert_allclose(model._noise.probabilities(), p, rtol=1e-5, atol=1e-9)
    skewed = AliasSampler([5.0, 1.0, 0.0, 2.0])
    np.testing.assert_allclose(skewed.probabilities(), [5 / 8, 1 / 8, 0, 2 / 8], atol=1e-7)


# --------------------------------------------------------------------- quality beside gensim


def _bombings_rank(model):
    sims = [w for w, _ in model.wv.most_similar("attacks", topn=len(model.wv))]
    return sims.index("bombings")


@pytest.mark.parametrize(
    "params",
    [
        dict(sg=1, window=4, hs=0, negative=15, min_count=5, epochs=10),
    ],
    ids=["sg_neg"],
)  # fmt: skip
def test_lee_sanity_bar_of_gensim(lee, params):
    """gensim's test_word2vec.py model_sanity, with its hyperparameters."""
    model = Word2Vec(lee, workers=1, seed=1, **params)
    assert _bombings_rank(model) < 50
    sims = [w for w, _ in model.wv.most_similar([model.wv["attacks"]], topn=51)]
    assert "attacks" in sims and "bombings" in sims


@pytest.mark.slow
@pytest.mark.parametrize(
    "params",
    [
        dict(sg=1, window=4, hs=1, negative=0, min_count=5, epochs=10),
        dict(sg=0, cbow_mean=1, alpha=0.1, window=2, hs=1, negative=0, min_count=5, epochs=60),
        dict(
            sg=0,
            cbow_mean=1,
            alpha=0.05,
            window=5,
            hs=0,
            negative=15,
            min_count=5,
            epochs=10,
            sample=0,
        ),
        dict(sg=0, cbow_mean=0, alpha=0.05, window=5, hs=0, negative=15, min_count=5, epochs=10),
    ],
    ids=["sg_hs", "cbow_hs", "cbow_neg", "cbow_sum_neg"],
)
def test_lee_sanity_bar_of_gensim_more(lee, params):
    assert _bombings_rank(Word2Vec(lee, workers=1, seed=1, **params)) < 50


@pytest.mark.parametrize("fork", [True, False], ids=["processes", "threads"])
def test_two_workers_train_chunks_in_parallel_to_the_same_quality(lee, monkeypatch, tmp_path, fork):
    """workers=2: two workers train chunks (Hogwild), forked processes sharing the weights
    where fork is available (Linux), else threads; both pass the bar workers=1 passes."""
    if fork and not word2vec_workers.can_fork():
        pytest.skip("no fork on this platform: the workers are threads")
    monkeypatch.setattr(word2vec_module, "can_fork", lambda: fork)
    params = dict(sg=1, window=4, hs=0, negative=15, min_count=5, epochs=10, seed=1)
    log = tmp_path / "workers"
    train_chunk = Word2Vec._train_chunk

    def spy(self, *args, **kwargs):  # runs in the worker (a child process, or a thread)
        with open(log, "a") as f:
            f.write(f"{os.getpid()} {threading.get_ident()}\n")
        return train_chunk(self, *args, **kwargs)

    monkeypatch.setattr(Word2Vec, "_train_chunk", spy)
    threads = torch.get_num_threads()
    model = Word2Vec(lee, workers=2, **params)
    workers = {tuple(line.split()) for line in log.read_text().splitlines()}
    pids = {pid for pid, _ in workers}
    assert len(workers) == 2
    if fork:  # two other processes, whose updates reached this process's weights
        assert len(pids) == 2 and str(os.getpid()) not in pids
    else:
        assert pids == {str(os.getpid())}
        assert str(threading.get_ident()) not in {tid for _, tid in workers}
    assert torch.get_num_threads() == threads  # the intra-op thread count is restored
    assert model.epochs_trained == 10 and model.words_trained == 10 * model.corpus_total_words
    assert _bombings_rank(model) < 50  # the bar workers=1 passes (test_lee_sanity_bar_of_gensim)
    before = model.wv.vectors.copy()
    model.train(lee[:50], epochs=1)  # the weights are ordinary tensors again, and train on
    assert not np.array_equal(before, model.wv.vectors)


@pytest.mark.parametrize("mode", ["processes", "threads"])
def test_workers_train_every_chunk_once_into_shared_weights(mode):
    """The Hogwild drivers: every chunk is trained once, by a worker whose writes land in the
    caller's tensor (``shared_copy`` for processes), and recorded once in the caller, with a
    learning rate read from the shared count of finished words."""
    if mode == "processes" and not word2vec_workers.can_fork():
        pytest.skip("no fork on this platform: the workers are threads")
    n = 20
    slots = torch.zeros(n + 1, dtype=torch.float64)
    slots = word2vec_workers.shared_copy(slots) if mode == "processes" else slots
    jobs = [(0, None, None, raw) for raw in range(1, n + 1)]  # (epoch, ids, sids, raw words)

    def work(job, gen, ws, alpha):
        slots[job[-1]] += 1.0  # each chunk its own slot: no two workers write one
        return float(job[-1])

    recorded = []
    driver = word2vec_workers.train_in_processes if mode == "processes" else (
        word2vec_workers.train_in_threads)  # fmt: skip
    driver(iter(jobs), work, lambda job, loss, alpha: recorded.append((job[-1], loss, alpha)),
           lambda done: float(done), [1, 2])  # fmt: skip
    assert sorted(raw for raw, _, _ in recorded) == list(range(1, n + 1))
    assert slots[1:].tolist() == [1.0] * n and slots[0] == 0
    assert all(loss == raw for raw, loss, _ in recorded)
    total = n * (n + 1) // 2
    assert all(0 <= alpha <= total - raw for raw, _, alpha in recorded)
    assert any(alpha > 0 for _, _, alpha in recorded)  # the count grew while they worked


def test_a_worker_that_dies_is_reported_not_waited_for(lee, monkeypatch):
    if not word2vec_workers.can_fork():
        pytest.skip("no fork on this platform: the workers are threads")

    def die(self, *args, **kwargs):
        os._exit(3)  # as a worker killed by the OS would end

    monkeypatch.setattr(Word2Vec, "_train_chunk", die)
    with pytest.raises(RuntimeError, match="died"):
        Word2Vec(lee[:200], workers=2, min_count=2, vector_size=8, epochs=2)


def test_a_worker_error_is_raised_in_the_caller(lee, monkeypatch):
    def boom(self, *args, **kwargs):
        raise RuntimeError("worker failed")

    monkeypatch.setattr(Word2Vec, "_train_chunk", boom)
    with pytest.raises(RuntimeError, match="worker failed"):
        Word2Vec(lee[:200], workers=2, min_count=2, vector_size=8, epochs=2)


def _head500():
    word2vec, test_utils = require("gensim.models.word2vec"), require("gensim.test.utils")
    corpus = list(word2vec.LineSentence(test_utils.datapath("head500.noblanks.cor.bz2")))
    return word2vec, corpus, test_utils.datapath("wordsim353.tsv")


def _spearman_beside_gensim(epochs, workers=1):
    word2vec, corpus, wordsim = _head500()
    ours = Word2Vec(corpus, min_count=3, epochs=epochs, workers=workers, seed=1)
    theirs = word2vec.Word2Vec(corpus, min_count=3, epochs=epochs, workers=workers, seed=1)
    return ours.wv.evaluate_word_pairs(wordsim)[1][0], theirs.wv.evaluate_word_pairs(wordsim)[1][0]


@pytest.mark.parametrize("workers", [1, 2])
def test_head500_wordsim_short_run_beside_gensim(workers):
    ours, theirs = _spearman_beside_gensim(epochs=3, workers=workers)
    assert ours >= theirs - 0.05, (ours, theirs)


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_head500_wordsim_spearman_beside_gensim(workers):
    """gensim's test_evaluate_word_pairs settings (min_count 3, 20 epochs), both with the
    same number of worker threads (Hogwild on both sides with 2)."""
    ours, theirs = _spearman_beside_gensim(epochs=20, workers=workers)
    assert ours >= theirs - 0.05, (ours, theirs)
    assert ours > 0.35


# ------------------------------------------------------------ streaming, save/load, errors


def test_corpus_file_streams_like_sentences(lee, tmp_path):
    path = tmp_path / "lee.txt"
    path.write_text("\n".join(" ".join(s) for s in lee) + "\n")
    a = Word2Vec(min_count=5, workers=1)
    a.build_vocab(lee)
    b = Word2Vec(min_count=5, workers=1)
    b.build_vocab(corpus_file=path)
    assert a.wv.index_to_key == b.wv.index_to_key and list(a.wv.counts) == list(b.wv.counts)
    effective, raw = b.train(corpus_file=path, epochs=1)
    assert raw == sum(map(len, lee)) and 0 < effective < raw
    long_line = tmp_path / "one_line.txt"  # text8-style: one line, split into 10000-word pieces
    long_line.write_text(" ".join(["a b c d"] * 6000))
    model = Word2Vec(corpus_file=long_line, min_count=1, epochs=1, vector_size=8, workers=1)
    assert model.corpus_count == 3 and model.corpus_total_words == 24000


def test_same_seed_same_vectors_and_save_load_roundtrip(lee, tmp_path):
    small = lee[:100]
    kw = dict(min_count=2, vector_size=16, epochs=2, hs=1, negative=3, sg=1, workers=1)
    a, b = Word2Vec(small, **kw), Word2Vec(small, **kw)
    np.testing.assert_array_equal(a.wv.vectors, b.wv.vectors)
    path = tmp_path / "model.safetensors"
    a.save(path)
    assert (tmp_path / "model.safetensors.json").is_file()
    c = Word2Vec.load(path)
    np.testing.assert_array_equal(c.wv.vectors, a.wv.vectors)
    assert c.wv.index_to_key == a.wv.index_to_key and c.sg == 1 and c.hs == 1
    assert torch.equal(c.syn1neg, a.syn1neg) and torch.equal(c.syn1, a.syn1)
    assert c.epochs_trained == 2 and c.words_trained == a.words_trained
    before = c.wv.vectors.copy()
    c.train(small, epochs=1)  # continues training
    assert c.epochs_trained == 3 and not np.array_equal(before, c.wv.vectors)
    with open(f"{path}.json") as f:
        assert "pickle" not in f.read()


def test_bad_input_names_the_argument(lee):
    with pytest.raises(ArgumentError, match="sentences is empty"):
        Word2Vec([[]])
    with pytest.raises(ArgumentError, match="sentences is empty"):
        Word2Vec([])
    with pytest.raises(ArgumentError, match="min_count"):
        Word2Vec([["a", "b"]], min_count=5)
    with pytest.raises(ArgumentError, match="window"):
        Word2Vec(window=0)
    with pytest.raises(ArgumentError, match="negative = 0 with hs = 0"):
        Word2Vec(negative=0, hs=0)
    with pytest.raises(ArgumentTypeError, match="vector_size"):
        Word2Vec(vector_size=2.5)
    with pytest.raises(ArgumentTypeError, match="sentences must yield lists"):
        Word2Vec(["a sentence as a string"])
    with pytest.raises(ArgumentTypeError, match="re-iterable"):
        Word2Vec(s for s in lee)
    with pytest.raises(ArgumentError, match="corpus_file"):
        Word2Vec(corpus_file="/nonexistent/file.txt")
    model = Word2Vec(lee[:50], min_count=2, vector_size=8, epochs=1, workers=1)
    with pytest.raises(KeyError, match="qwertyuiop"):
        model.wv.most_similar("qwertyuiop")
