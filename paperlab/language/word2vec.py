"""Word2Vec: skip-gram and CBOW with negative sampling or hierarchical softmax (note D1).

The idea
--------
Words that occur in similar contexts get similar vectors. Each word ``w`` has an input vector
``v_w`` (the rows of ``wv.vectors``) and the model learns to predict words from their
neighbours (Mikolov et al. 2013, "Efficient Estimation of Word Representations in Vector
Space" and "Distributed Representations of Words and Phrases and their Compositionality"):

- skip-gram (``sg=1``): each context word ``c`` within the window of position ``i`` predicts
  the word ``w_i``: input ``h = v_c``;
- CBOW (``sg=0``): the context as a whole predicts ``w_i``: ``h`` is the mean
  (``cbow_mean=1``) or the sum of the context vectors.

The V-way softmax is too dear, so the prediction of target ``t`` from ``h`` is one of:

- negative sampling (``negative=K``): maximise ``log s(h . u_t) + sum_k log s(-h . u_nk)``
  for K noise words drawn with probability proportional to ``count ** ns_exponent`` (a
  drawn negative equal to the target is skipped);
- hierarchical softmax (``hs=1``): ``t`` is a leaf of a Huffman tree
  (``paperlab.algorithms.huffman``), and ``log p(t | h) = sum_d log s((1 - 2 code_d) h . u_node_d)``
  over the inner nodes on its path.

Both are SGD steps written out as word2vec.c writes them: with ``f = h . u`` and label
``y`` (1 for the target, 0 for a negative; ``1 - code_d`` on the tree),
``g = (y - s(f)) * alpha``, ``u += g h`` and ``h``'s rows get ``+= sum g u``. (word2vec.c
uses a sigmoid table clipped at ``|f| = 6``: negative sampling takes ``s = 1`` above and
``0`` below, hierarchical softmax skips a node there; here the sigmoid is exact inside.)

The rest is as in word2vec.c and gensim 4.4:

- vocabulary: words with ``count >= min_count``, by descending count (``max_vocab_size``
  prunes the rarest words while counting, as gensim does);
- subsampling: a word of count c is kept with probability ``min(1, (sqrt(c / t) + 1) t / c)``
  with ``t = sample * (total words)``, before windows are formed;
- the reduced window: for each position a random ``b`` in ``[0, window)``; the context is
  ``i - (window - b) .. i + (window - b)`` within the sentence (``shrink_windows=False``:
  always the full window);
- the learning rate falls linearly from ``alpha`` to ``min_alpha`` over all the words of all
  epochs, updated per chunk of ``batch_words`` words;
- CBOW with the sum (``cbow_mean=0``) spreads the error over the context (divides it by the
  context size), as gensim does; with the mean it adds the error to every context row.

How it is fast: no Python loop per word (``paperlab.language.word2vec_batch``)
------------------------------------------------------------------------------
A chunk of sentences becomes one array of word ids. Subsampling is one random draw per word,
the windows are one ``randint`` per word, and the (centre, context) pairs of every offset
``d = 1..window`` come from a comparison of shifted arrays. The chunk's centres are then
trained in steps of about ``batch_rows`` (4096) rows read, counted as each centre's
``2 window`` context slots plus its output rows (``cbow_ns_batch_rows``, 16384, for CBOW with
the mean and negative sampling alone; a quarter of ``batch_rows`` for CBOW with the sum):
gather the rows a step touches, compute all its dot products and gradients, and
``index_add_`` them back. Only touched rows are read or written, large temporaries reuse the
same buffers step after step, and the same code runs on CUDA (``device="cuda"``).
Everything that does not depend on the weights is done once per chunk, not per step: the
negatives (drawn from an alias table, ``word2vec_batch.AliasSampler``: O(1) per draw where a
binary search of the cumulative distribution cost 9% of a CBOW epoch), the output rows,
labels and masks of every centre, for CBOW the real context words back to back
(``embedding_bag`` with offsets reads no padded slot), and the split of all of these into the
steps' parts (one call per tensor: Python indexing holds the GIL, which ``workers > 1``
share). Where the CPU time goes (CBOW, negative 5, head500, one thread, torch profiler): the
``index_add_`` scatters about a fifth, the gathers an eighth, ``embedding_bag`` 4%, the chunk
preparation (windows, masks, draws) about 10%, the rest many small per-step ops; random rows
of two 8 MB tables, so the scatters and gathers run near memory speed, not at the CPU's.
Batched products with a dimension of 1 are slow on the CPU (a (N, 1, 1) x (N, 1, 100)
``bmm`` took 350-560 us where the broadcast product takes tens), so a layer with one input
and one row per group uses elementwise products instead.

Four departures from word2vec.c make this possible; the quality tests (gensim's own sanity
bar on the Lee corpus, wordsim353 on head500 beside gensim) are the evidence that the results
are equivalent:

- a step reads all its rows before writing any ("Hogwild within a batch"), where word2vec.c
  updates after every pair, so a row's updates in one step are summed rather than chained;
  a row that one step updates more than ``cap`` times (the Huffman root, frequent negatives,
  frequent words without subsampling) gets ``cap / n`` of the sum: at most ``cap`` updates'
  worth, along their mean (``word2vec_batch`` explains why; without the cap the root's
  summed update overshoots and hierarchical softmax falls behind gensim). ``cap`` is
  ``row_cap`` (16) at ``batch_rows`` and grows as the square root of the rows per step (the
  square-root learning-rate scaling for a larger batch): 32 at CBOW's 16384. There, with 16,
  the Lee sanity ranks of CBOW at gensim's defaults fell to 238, 82, 61 (seeds 1-3; gensim
  36, 30, 16): four times fewer steps moved the frequent rows too little; with 32 they are
  24, 13, 10; with 64 the run without subsampling diverged;
- step k of a chunk trains its centres k, k + S, k + 2S, ... (S steps), so no two centres of
  one step are neighbours and the overlapping windows of neighbouring words are chained
  step after step, not summed within one;
- in skip-gram, the context words of one centre share that centre's K negatives (one draw
  per centre, as pWord2Vec does: Ji et al. 2016, "Parallelizing Word2Vec in Shared and
  Distributed Memory"), so the step is a small matrix product (contexts x (1 + K)) instead
  of one dot product per (pair, negative). Each pair still sees K negatives from the same
  noise distribution; word2vec.c draws them per pair. For one pair the update is
  word2vec.c's exactly (tested in float64);
- in CBOW, ``cbow_negative_share`` (4) centres of a step share one draw of K negatives, the
  same idea across centres: their four inputs meet the same K rows in one (4 x K) product,
  and the step gathers and scatters 1 + K/4 output rows per centre instead of 1 + K (a
  negative equal to one centre's target is skipped for that centre only). On head500
  (wordsim353, 20 epochs, seeds 1-3) this and the larger step give 0.489, 0.496, 0.481
  where the word2vec.c-like step gave 0.474, 0.456, 0.459 and gensim 0.479, 0.465, 0.489;
  8 centres a draw failed Lee's bar for CBOW with the sum (ranks 98, 25, 92).

Workers (``workers``), as word2vec.c and gensim: Hogwild
--------------------------------------------------------
On the CPU, ``workers=N > 1`` trains with N workers (``paperlab.language.word2vec_workers``):
the caller reads the corpus into a bounded queue of chunks, each worker takes the next chunk
and trains it with its own generator and scratch buffers, and all of them update the shared
``wv.vectors``, ``syn1neg`` and ``syn1`` rows without locks (Recht et al. 2011, "Hogwild!";
word2vec.c and gensim do the same with threads). On Linux the workers are forked processes
and the weights sit in shared memory while they run: every torch op takes and releases the
GIL, and two Python threads calling CBOW's many small ops ran only 1.3-1.4x as fast as one,
where two processes ran 1.6-2.0x as fast (``paperlab bench word2vec``, all four settings).
Elsewhere the workers are threads. torch's intra-op thread count is 1 while they run
(restored afterwards), so N workers use about N cores. The learning rate of a chunk follows
the shared count of words the workers have finished.
``workers=1`` trains in the calling thread and is deterministic for a given ``seed``;
``workers > 1`` is not (which worker takes which chunk, and the order in which updates of
one row land, depend on the scheduler), as in gensim. On CUDA, training is one stream in the
calling thread whatever ``workers`` says.

The corpus (``sentences`` or a streamed ``corpus_file``) is read by
``paperlab.language.word2vec_corpus``.

Persistence: ``save(path)`` writes ``path`` (safetensors: the vectors and output weights) and
``path + ".json"`` (vocabulary, counts, hyperparameters, training position). No pickle:
loading a model never runs code (gensim's ``save``/``load`` pickle).

Shapes: ``wv.vectors`` (V, vector_size); ``syn1neg`` (V, vector_size) when ``negative > 0``;
``syn1`` (V - 1, vector_size) when ``hs=1``; all float32.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from paperlab.algorithms.huffman import huffman_tree
from paperlab.errors import ArgumentError, ArgumentTypeError, ConfigError
from paperlab.language.keyed_vectors import KeyedVectors
from paperlab.language.word2vec_batch import (
    AliasSampler,
    Workspace,
    hs_rows,
    hs_update,
    ns_rows,
    ns_update,
    output_step,
    padded_tree,
    reduced_windows,
    train_cbow,
    train_skipgram,
)
from paperlab.language.word2vec_corpus import check_sentence, corpus_sentences
from paperlab.language.word2vec_workers import (
    can_fork,
    shared_copy,
    train_in_processes,
    train_in_threads,
)
from paperlab.registry import export_model

__all__ = [
    "Word2Vec",
    "hs_update",
    "keep_probabilities",
    "noise_distribution",
    "ns_update",
    "padded_tree",
    "reduced_windows",
]

HYPERPARAMETERS = (
    "vector_size", "window", "min_count", "max_vocab_size", "sg", "hs", "negative",
    "ns_exponent", "cbow_mean", "sample", "alpha", "min_alpha", "epochs", "shrink_windows",
    "seed", "workers", "batch_words",
)  # fmt: skip


# --------------------------------------------------------------------------- the formulas


def keep_probabilities(counts: Any, sample: float) -> np.ndarray:
    """word2vec's subsampling: keep a word of count c with min(1, (sqrt(c/t) + 1) t / c).

    ``t = sample * sum(counts)`` for ``sample < 1`` (gensim takes ``sample >= 1`` as t itself);
    ``sample = 0`` keeps every word.
    """
    c = np.asarray(counts, dtype=np.float64)
    if not sample:
        return np.ones_like(c)
    t = sample if sample >= 1.0 else sample * c.sum()
    return np.minimum(1.0, (np.sqrt(c / t) + 1.0) * t / c)


def noise_distribution(counts: Any, ns_exponent: float) -> np.ndarray:
    """Negative sampling's noise: ``P(w) = count_w ** ns_exponent / sum``."""
    p = np.asarray(counts, dtype=np.float64) ** float(ns_exponent)
    return p / p.sum()


# ------------------------------------------------------------------------------ the model


@export_model("word2vec", note="D1", paper="Mikolov et al. 2013")
class Word2Vec:
    """gensim-compatible Word2Vec (see the module docstring); trains at once given a corpus."""

    # rows read per step: centres x (2 window + output rows per centre); a quarter of it for
    # CBOW with the sum, whose large summed h makes the summed updates of a step overshoot
    # (Lee sanity ranks 134, 60, 120 on seeds 1-3 at 4096; 36, 22, 33 at 1024; gensim 41, 7, 3)
    batch_rows = 4096
    # CBOW (mean) with negative sampling alone: four times the rows (fewer, larger steps:
    # faster, and with 2 workers fewer GIL hand-offs per word), with the cap scaled to match;
    # hierarchical softmax keeps batch_rows
    cbow_ns_batch_rows = 16384
    cbow_negative_share = 4  # CBOW: centres per draw of K negatives (module docstring)
    row_cap: float | None = 16.0  # the most pair updates a row takes in full per step

    def __init__(
        self,
        sentences: Iterable[Any] | None = None,
        *,
        corpus_file: str | Path | None = None,
        vector_size: int = 100,
        window: int = 5,
        min_count: int = 5,
        max_vocab_size: int | None = None,
        sg: int = 0,
        hs: int = 0,
        negative: int = 5,
        ns_exponent: float = 0.75,
        cbow_mean: int = 1,
        sample: float = 1e-3,
        alpha: float = 0.025,
        min_alpha: float = 1e-4,
        epochs: int = 5,
        shrink_windows: bool = True,
        seed: int = 1,
        workers: int = 3,
        device: str | torch.device = "cpu",
        batch_words: int = 10000,
        progress: bool | None = None,
        compute_loss: bool = False,
    ) -> None:
        for name, value, low in (
            ("vector_size", vector_size, 1), ("window", window, 1), ("min_count", min_count, 1),
            ("negative", negative, 0), ("epochs", epochs, 1), ("workers", workers, 1),
            ("batch_words", batch_words, 1),
        ):  # fmt: skip
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ArgumentTypeError(f"{name} must be an int, got {value!r}")
            if value < low:
                raise ArgumentError(f"{name} must be >= {low}, got {value}")
        if not negative and not hs:
            raise ArgumentError("negative = 0 with hs = 0 leaves no output layer: set one")
        if max_vocab_size is not None and max_vocab_size < 1:
            raise ArgumentError(f"max_vocab_size must be >= 1 or None, got {max_vocab_size}")
        for name, value in (("sample", sample), ("alpha", alpha), ("min_alpha", min_alpha)):
            if not (isinstance(value, (int, float)) and value >= 0 and math.isfinite(value)):
                raise ArgumentError(f"{name} must be a finite number >= 0, got {value!r}")
        self.vector_size, self.window, self.min_count = int(vector_size), int(window), min_count
        self.max_vocab_size, self.sg, self.hs, self.negative = (
            max_vocab_size,
            int(sg),
            int(hs),
            negative,
        )
        self.ns_exponent, self.cbow_mean, self.sample = float(ns_exponent), int(cbow_mean), sample
        self.alpha, self.min_alpha, self.epochs = float(alpha), float(min_alpha), int(epochs)
        self.shrink_windows, self.seed, self.workers = bool(shrink_windows), int(seed), workers
        self.batch_words, self.progress = int(batch_words), progress
        self.compute_loss, self._with_loss = bool(compute_loss), bool(compute_loss)
        self.device = torch.device(device)
        self.wv = KeyedVectors(self.vector_size)
        self.corpus_count = self.corpus_total_words = 0
        self.epochs_trained = self.words_trained = 0
        self.running_training_loss = 0.0
        self.syn1neg = self.syn1 = None
        self.generator = torch.Generator(self.device).manual_seed(self.seed)
        self._workspace = Workspace()
        if sentences is not None or corpus_file is not None:
            self.build_vocab(sentences, corpus_file=corpus_file)
            self.train(sentences, corpus_file=corpus_file)

    # ------------------------------------------------------------------------- vocabulary

    def build_vocab(
        self, corpus_iterable: Iterable[Any] | None = None, *, corpus_file: str | Path | None = None
    ) -> None:
        """Count the words, keep ``count >= min_count`` by descending count, reset the weights."""
        sentences = corpus_sentences(corpus_iterable, corpus_file)
        counts: dict[str, int] = {}
        min_reduce, n_sentences, total = 1, 0, 0
        for n_sentences, sentence in enumerate(sentences, 1):
            for word in check_sentence(sentence, f"sentence {n_sentences}"):
                counts[word] = counts.get(word, 0) + 1
            total += len(sentence)
            if self.max_vocab_size and len(counts) > self.max_vocab_size:
                counts = {w: c for w, c in counts.items() if c > min_reduce}  # gensim's pruning
                min_reduce += 1
        if total == 0:
            raise ArgumentError("sentences is empty: the corpus has no words")
        kept = [(w, c) for w, c in counts.items() if c >= self.min_count]
        if not kept:
            raise ArgumentError(
                f"min_count={self.min_count} leaves the vocabulary empty "
                f"(the most frequent word occurs {max(counts.values())} times)"
            )
        kept.sort(key=lambda wc: -wc[1])  # stable: ties keep first-seen order
        self.corpus_count, self.corpus_total_words = n_sentences, total
        words = [w for w, _ in kept]
        self._counts = np.array([c for _, c in kept], dtype=np.int64)
        init = torch.rand(
            len(words), self.vector_size, generator=self.generator, device=self.device
        )
        self._vectors = (init - 0.5) / self.vector_size  # word2vec.c's initialisation
        self._set_vocabulary(words, self._counts)
        v, d = len(words), self.vector_size
        self.syn1neg = torch.zeros(v, d, device=self.device) if self.negative else None
        self.syn1 = torch.zeros(max(v - 1, 1), d, device=self.device) if self.hs else None

    def _set_vocabulary(self, words: list[str], counts: np.ndarray) -> None:
        self.wv = KeyedVectors(self.vector_size)
        self.wv.index_to_key = list(words)
        self.wv.key_to_index = {w: i for i, w in enumerate(words)}
        self.wv.counts = counts
        self._sync_wv()
        dev = self.device
        self._keep = torch.tensor(keep_probabilities(counts, self.sample), device=dev).float()
        self._noise = AliasSampler(noise_distribution(counts, self.ns_exponent), device=dev)
        if self.hs:
            codes, points = huffman_tree(counts.tolist())
            self._tree = padded_tree(codes, points, device=dev)
            self._mean_code = float(np.mean([len(c) for c in codes]))

    def _sync_wv(self) -> None:
        self.wv.vectors = self._vectors.detach().cpu().numpy()
        self.wv.norms = None

    # ------------------------------------------------------------------------------ training

    def _encoded_chunks(
        self, sentences: Iterable[Any]
    ) -> Iterator[tuple[np.ndarray, np.ndarray, int]]:
        """(word ids, sentence ids, raw word count) per chunk of about ``batch_words`` words."""
        index = self.wv.key_to_index
        ids: list[int] = []
        sids: list[int] = []
        raw = 0
        for s, sentence in enumerate(sentences):
            check_sentence(sentence, f"sentence {s + 1}")
            known = [index[w] for w in sentence if w in index]
            ids.extend(known)
            sids.extend([s] * len(known))
            raw += len(sentence)
            if len(ids) >= self.batch_words:
                yield np.array(ids, dtype=np.int64), np.array(sids, dtype=np.int64), raw
                ids, sids, raw = [], [], 0
        if ids or raw:
            yield np.array(ids, dtype=np.int64), np.array(sids, dtype=np.int64), raw

    def _train_chunk(
        self,
        ids: torch.Tensor,
        sentence: torch.Tensor,
        alpha: float,
        gen: torch.Generator | None = None,
        ws: Workspace | None = None,
    ) -> float:
        """Train one chunk; ``gen`` and ``ws`` are the worker's (default: the model's)."""
        gen = self.generator if gen is None else gen
        ws = self._workspace if ws is None else ws
        dev = self.device
        if self.sample:
            kept = torch.rand(len(ids), generator=gen, device=dev) < self._keep.index_select(0, ids)
            kept = torch.nonzero(kept)[:, 0]  # one nonzero, two index_select (not 2 masks)
            ids, sentence = ids.index_select(0, kept), sentence.index_select(0, kept)
        if len(ids) < 2:
            return 0.0
        if self.shrink_windows:
            reduced = torch.randint(0, self.window, (len(ids),), generator=gen, device=dev)
        else:
            reduced = torch.zeros(len(ids), dtype=torch.long, device=dev)
        pos, mask = reduced_windows(sentence, reduced, self.window)
        centres = torch.nonzero(mask.any(1))[:, 0]
        if len(centres) == 0:  # no position has a context (one-word sentences)
            return 0.0
        outputs = (self.negative + 1 if self.negative else 0) + (
            self._tree[0].shape[1] if self.hs else 0
        )
        if self.sg:
            rows_read = self.batch_rows
        elif not self.cbow_mean:
            rows_read = self.batch_rows // 4
        else:
            rows_read = self.batch_rows if self.hs else self.cbow_ns_batch_rows
        step = max(16, rows_read // (outputs + 2 * self.window))  # rows read per centre
        # the cap grows as the square root of the step (the square-root learning-rate scaling
        # for a k-times larger batch): at 4x the rows a frequent row may move 2x as far
        cap = self.row_cap
        cap = None if cap is None else cap * math.sqrt(rows_read / self.batch_rows)
        # step k trains centres k, k + S, k + 2S, ... (S steps): the centres of one step are
        # far apart, so the overlapping windows of neighbouring words are chained step after
        # step (as word2vec.c chains them) instead of being summed within a step
        n_steps = -(-len(centres) // step)
        centres = centres[torch.argsort(torch.arange(len(centres), device=dev) % n_steps,
                                        stable=True)]  # fmt: skip
        targets, mask = ids.index_select(0, centres), mask.index_select(0, centres)
        context = ids.index_select(0, pos.index_select(0, centres).reshape(-1)).view(mask.shape)
        # the output rows of every centre, once per chunk (sliced per step below)
        n_inputs = mask.sum(1)  # real context words per centre
        per_pair = n_inputs[:, None].float() if self.sg else 1.0  # pair updates per output row
        # a layer: (rows, labels, valid, pair updates per row, weights, hs, centres per row
        # group); a step slices centres a:b, and a layer of groups of G centres a/G : b/G
        layers = []
        if self.hs:
            rows, label, valid = hs_rows(targets, self._tree)
            layers.append((rows, label.float(), valid, valid * per_pair, self.syn1, True, 1))
        share = 1 if self.sg else self.cbow_negative_share
        if self.negative and share > 1:  # CBOW: G centres share one draw of K negatives
            n_groups = -(-len(centres) // share)
            negatives = self._noise.draw((n_groups, self.negative), gen)
            padded = torch.full((n_groups * share,), -1, dtype=targets.dtype, device=dev)
            padded[: len(targets)] = targets
            # (groups, G, K): a negative equal to a centre's target is skipped for that centre
            valid = negatives[:, None, :] != padded.view(n_groups, share, 1)
            valid &= (padded >= 0).view(n_groups, share, 1)
            ones = torch.ones(len(centres), 1, device=dev)
            layers.append((targets[:, None], ones, ones.bool(), ones, self.syn1neg, False, 1))
            label = torch.zeros(1, 1, device=dev).expand(n_groups, self.negative)
            layers.append((negatives, label, valid, valid.sum(1).float(), self.syn1neg, False,
                           share))  # fmt: skip
        elif self.negative:  # one draw of K negatives per centre, shared by its inputs
            negatives = self._noise.draw((len(centres), self.negative), gen)
            rows, label, valid = ns_rows(targets, negatives)
            label = label.float().expand(len(centres), -1)
            layers.append((rows, label, valid, valid * per_pair, self.syn1neg, False, 1))
        if not self.sg:  # CBOW: the real context words back to back, with their weights
            slots = torch.nonzero(mask)  # (S, 2): centre, column
            group = slots[:, 0].contiguous()
            words = context.reshape(-1).index_select(0, group * mask.shape[1] + slots[:, 1])
            size = n_inputs[:, None].float()
            weights = (1.0 / size[:, 0]).index_select(0, group) if self.cbow_mean else None
            starts = torch.cumsum(n_inputs, 0) - n_inputs
        loss = torch.zeros((), device=dev)
        # step bounds, multiples of G (for the layers of groups) except the chunk's end
        unit = share if self.negative else 1
        q, r = divmod(-(-len(centres) // unit), max(n_steps, 1))
        bounds = [0]
        for k in range(n_steps):
            bounds.append(bounds[-1] + unit * (q + (k < r)))
        bounds[-1] = len(centres)
        # every chunk tensor split into its steps' parts once (one call each, not a slice per
        # step: Python indexing holds the GIL, which the workers of ``workers > 1`` share)
        sizes = [b - a for a, b in zip(bounds, bounds[1:])]
        group_sizes = [-(-b // unit) - a // unit for a, b in zip(bounds, bounds[1:])]
        per_layer = []
        for rows, lab, val, pairs, w, hs, g in layers:
            parts = sizes if g == 1 else group_sizes
            flat_parts = [n * rows.shape[1] for n in parts]
            per_layer.append([(r_, l_, v_, p_, w, hs, g) for r_, l_, v_, p_ in zip(
                rows.split(parts), lab.split(parts), val.split(parts),
                pairs.reshape(-1).split(flat_parts))])  # fmt: skip
        if self.sg:
            inputs = list(zip(context.split(sizes), mask.split(sizes)))
        else:  # each step's slots, with offsets and centres counted from the step's start
            step_of = torch.repeat_interleave(torch.tensor(sizes, dtype=torch.long, device=dev))
            first = torch.tensor(bounds[:-1], device=dev).index_select(0, step_of)
            slot_bounds = torch.cat([starts, n_inputs.sum().reshape(1)])[bounds]
            local_starts = starts - slot_bounds[:-1].index_select(0, step_of)
            local_group = group - first.index_select(0, group)
            slot_sizes = slot_bounds.diff().tolist()
            inputs = list(zip(
                words.split(slot_sizes), local_starts.split(sizes), local_group.split(slot_sizes),
                (weights if weights is not None else torch.ones(len(words), device=dev)
                 ).split(slot_sizes),
                size.split(sizes)))  # fmt: skip
        for step_layers, step_inputs in zip(zip(*per_layer), inputs):

            def outputs(h, m, layers=step_layers):
                return self._output_layer(h, m, layers, alpha, cap, ws)

            if self.sg:
                part = train_skipgram(self._vectors, *step_inputs, outputs, cap, ws)
            else:
                words_k, starts_k, group_k, weights_k, size_k = step_inputs
                part = train_cbow(self._vectors, words_k, starts_k, weights_k, group_k, outputs,
                                  None if self.cbow_mean else size_k, cap, ws)  # fmt: skip
            if part is not None:
                loss += part
        return float(loss) if self._with_loss else 0.0

    def _output_layer(
        self,
        h: torch.Tensor,
        mask: torch.Tensor | None,
        layers: list,
        alpha: float,
        cap: float | None,
        ws: Workspace,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        squeeze = h.dim() == 2
        h = h.unsqueeze(1) if squeeze else h
        neu1e, loss, with_loss = None, None, self._with_loss
        for rows, label, valid, pairs, weights, hs, share in layers:
            if share == 1:
                part, lpart = output_step(h, mask, rows, label, valid, weights, alpha, hs,
                                          with_loss, cap, ws, pairs)  # fmt: skip
            else:  # CBOW (h is (N, 1, D)): groups of G centres share their output rows
                n, _, d = h.shape
                hg = h if n % share == 0 else torch.cat([h, h.new_zeros(-n % share, 1, d)])
                part, lpart = output_step(hg.view(-1, share, d), None, rows, label, valid,
                                          weights, alpha, hs, with_loss, cap, ws, pairs,
                                          "shared")  # fmt: skip
                part = part.reshape(-1, 1, d)[:n]
            neu1e = part if neu1e is None else neu1e.add_(part)  # a step buffer: in place
            loss = lpart if loss is None else (loss + lpart if lpart is not None else loss)
        assert neu1e is not None
        return (neu1e.squeeze(1) if squeeze else neu1e), loss

    def train(
        self,
        corpus_iterable: Iterable[Any] | None = None,
        *,
        corpus_file: str | Path | None = None,
        total_examples: int | None = None,
        total_words: int | None = None,
        epochs: int | None = None,
        start_alpha: float | None = None,
        end_alpha: float | None = None,
        progress: bool | None = None,
        compute_loss: bool | None = None,
    ) -> tuple[int, int]:
        """Train (or continue training) on a corpus; returns (effective words, raw words).

        The learning rate falls from ``start_alpha`` (default ``alpha``) to ``end_alpha``
        (default ``min_alpha``) over ``epochs`` passes of ``total_words`` words (default: the
        corpus that ``build_vocab`` counted). ``total_examples`` is accepted for gensim's
        calls and not needed.
        """
        if not self.wv.index_to_key:
            raise ConfigError("the vocabulary is empty: call build_vocab first")
        sentences = corpus_sentences(corpus_iterable, corpus_file)
        epochs = self.epochs if epochs is None else epochs
        if epochs < 1:
            raise ArgumentError(f"epochs must be >= 1, got {epochs}")
        start = self.alpha if start_alpha is None else start_alpha
        end = self.min_alpha if end_alpha is None else end_alpha
        per_epoch = total_words or self.corpus_total_words
        planned = max(per_epoch * epochs, 1)
        show = progress if progress is not None else self.progress
        show = sys.stderr.isatty() if show is None else show
        compute_loss = self.compute_loss if compute_loss is None else compute_loss
        self._with_loss = bool(compute_loss or show)
        on_cpu = self.device.type == "cpu"
        n_workers = self.workers if on_cpu else 1  # as gensim: ``workers`` threads
        cache: list | None = [] if isinstance(sentences, (list, tuple)) else None

        def jobs() -> Iterator[tuple[int, np.ndarray, np.ndarray, int]]:
            # an in-memory corpus is encoded once (its ids are smaller than its tokens)
            for epoch in range(epochs):
                chunks = cache if cache and epoch else self._encoded_chunks(sentences)
                for ids_np, sids_np, raw in chunks:
                    if cache is not None and epoch == 0:
                        cache.append((ids_np, sids_np, raw))
                    yield epoch, ids_np, sids_np, raw

        bar = _progress_bar() if show else None
        task = bar.add_task("w2v", total=planned, epoch="", speed="", lr="", loss="") if bar else 0
        done = {"raw": 0, "effective": 0}  # words processed (all workers)
        losses: list[float] = []
        t0 = time.perf_counter()

        def alpha_of(raw_done: int) -> float:  # linear decay over the words of all epochs
            return start - (start - end) * min(raw_done / planned, 1.0)

        def work(job: tuple, gen: torch.Generator, ws: Workspace, alpha: float) -> float:
            _, ids_np, sids_np, _ = job
            ids = torch.from_numpy(ids_np).to(self.device)
            sids = torch.from_numpy(sids_np).to(self.device)
            return self._train_chunk(ids, sids, alpha, gen, ws)

        def record(job: tuple, loss: float, alpha: float) -> None:
            epoch, ids_np, _, raw = job
            losses.append(loss)
            done["raw"] += raw
            done["effective"] += len(ids_np)
            if bar is not None:
                speed = done["raw"] / max(time.perf_counter() - t0, 1e-9)
                bar.update(task, completed=done["raw"], epoch=f"{epoch + 1}/{epochs}",
                           speed=f"{speed:,.0f}", lr=f"{alpha:.5f}",
                           loss=f"{loss / max(len(ids_np), 1):.3f}")  # fmt: skip

        threads = torch.get_num_threads()
        if on_cpu:  # every worker's ops single-threaded: the parallelism is the workers'
            torch.set_num_threads(1)
        try:
            with torch.no_grad(), bar if bar else _Null():
                if n_workers == 1:
                    for job in jobs():
                        alpha = alpha_of(done["raw"])
                        record(job, work(job, self.generator, self._workspace, alpha), alpha)
                else:
                    self._train_workers(jobs(), work, record, alpha_of, n_workers)
        finally:
            torch.set_num_threads(threads)
        self.epochs_trained += epochs
        done_raw, effective = done["raw"], done["effective"]
        self.words_trained += done_raw
        self.running_training_loss = float(sum(losses))
        self._sync_wv()
        return effective, done_raw

    def _train_workers(self, jobs, work, record, alpha_of, n_workers: int) -> None:
        """Hogwild, as word2vec.c and gensim: ``n_workers`` workers share the weights.

        On Linux the workers are forked processes and the weights are moved into shared
        memory for the run (``word2vec_workers``: torch ops from Python threads hand the GIL
        back and forth at every op); elsewhere they are threads. A worker's generator is
        seeded from the model's, but which worker takes which chunk, and the order in which
        their updates of a row land, depend on the scheduler: not deterministic (as gensim).
        """
        seeds = torch.randint(0, 2**62, (n_workers,), generator=self.generator).tolist()
        if not can_fork():
            train_in_threads(jobs, work, record, alpha_of, seeds)
            return
        names = [n for n in ("_vectors", "syn1neg", "syn1") if getattr(self, n) is not None]
        for name in names:
            setattr(self, name, shared_copy(getattr(self, name)))
        try:
            train_in_processes(jobs, work, record, alpha_of, seeds)
        finally:  # back to ordinary tensors (the shared mappings are freed with the copies)
            for name in names:
                setattr(self, name, getattr(self, name).clone())

    # -------------------------------------------------------------------------- save / load

    def save(self, path: str | Path) -> None:
        """Write ``path`` (safetensors weights) and ``path + ".json"`` (everything else)."""
        from safetensors.torch import save_file

        path = Path(path)
        tensors = {"vectors": self._vectors.cpu().contiguous()}
        if self.syn1neg is not None:
            tensors["syn1neg"] = self.syn1neg.cpu().contiguous()
        if self.syn1 is not None:
            tensors["syn1"] = self.syn1.cpu().contiguous()
        save_file(tensors, str(path))
        meta = {
            "format": "paperlab-word2vec",
            "version": 1,
            "hyperparameters": {k: getattr(self, k) for k in HYPERPARAMETERS},
            "vocabulary": self.wv.index_to_key,
            "counts": self._counts.tolist(),
            "training": {
                "epochs_trained": self.epochs_trained,
                "words_trained": self.words_trained,
                "corpus_count": self.corpus_count,
                "corpus_total_words": self.corpus_total_words,
            },
        }
        Path(f"{path}.json").write_text(json.dumps(meta, ensure_ascii=False))

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> Word2Vec:
        """Read a model written by ``save`` (no code runs: JSON and safetensors only)."""
        from safetensors.torch import load_file

        path = Path(path)
        sidecar = Path(f"{path}.json")
        if not path.is_file() or not sidecar.is_file():
            raise ArgumentError(f"path {str(path)!r}: need the file and its {sidecar.name} sidecar")
        meta = json.loads(sidecar.read_text())
        if meta.get("format") != "paperlab-word2vec":
            raise ArgumentError(f"{sidecar} is not a paperlab Word2Vec sidecar")
        model = cls(**meta["hyperparameters"], device=device)
        tensors = load_file(str(path), device=str(model.device))
        counts = np.array(meta["counts"], dtype=np.int64)
        model._counts = counts
        model._vectors = tensors["vectors"]
        model._set_vocabulary(meta["vocabulary"], counts)
        model.syn1neg, model.syn1 = tensors.get("syn1neg"), tensors.get("syn1")
        for key, value in meta["training"].items():
            setattr(model, key, value)
        return model


class _Null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _progress_bar():
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("word2vec epoch {task.fields[epoch]}"),
        BarColumn(),
        TextColumn("{task.fields[speed]} words/s  lr {task.fields[lr]}  loss {task.fields[loss]}"),
        TimeRemainingColumn(),
        transient=False,
    )
