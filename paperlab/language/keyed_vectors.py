"""Word vectors and their queries, in gensim's ``KeyedVectors`` API and word2vec's files (D1).

The idea
--------
A trained word2vec model is, for its users, a table: one row of ``vector_size`` floats per
word, rows in vocabulary order (most frequent first). Everything people do with it is cosine
geometry on the rows:

- ``most_similar(positive, negative)`` (3CosAdd, Mikolov et al. 2013): unit-normalise each
  query vector, take the weighted mean (``+1`` for positive, ``-1`` for negative words),
  normalise it, and rank every word by ``cos(v_w, mean)``, leaving out the query words.
  ``king - man + woman`` is ``most_similar(positive=["king", "woman"], negative=["man"])``.
- ``most_similar_cosmul`` (3CosMul, Levy & Goldberg 2014): rank by
  ``prod_pos (1 + cos) / 2 / (prod_neg (1 + cos) / 2 + 1e-6)``.
- ``evaluate_word_analogies(path)``: word2vec's ``compute-accuracy`` on a questions file
  (``: section`` lines, then ``a b c d`` lines): the answer to ``a : b :: c : ?`` is the best
  of the top 5 of ``most_similar([b, c], [a])`` (vocabulary restricted to the first
  ``restrict_vocab`` words) that is none of ``a, b, c``; a question with a word outside that
  vocabulary is skipped. Returns ``(accuracy, sections)``, the last section the total.
- ``evaluate_word_pairs(path)``: cosine similarity of each word pair of a wordsim353-style file
  (``a<TAB>b<TAB>score``, ``#`` comments) against the human scores: Pearson and Spearman
  ``(statistic, p-value)`` and the percentage of pairs skipped as out of vocabulary.

Every one of these follows gensim 4.4 (``gensim/models/keyedvectors.py``) step for step,
including its float32 arithmetic, so the scores agree to float32 rounding and the
evaluations give the same numbers (the tests check both on gensim-trained vectors).

The files
---------
word2vec.c's formats, which gensim reads and writes with ``save_word2vec_format``:

- text: a header ``"<count> <dim>\\n"``, then one line per word: the word, a space, ``dim``
  floats separated by spaces;
- binary: the same header, then per word the word's UTF-8 bytes, a space, ``dim`` little-endian
  float32s (4 bytes each) and a newline (word2vec.c writes it, gensim does not; both
  readers skip it).

A malformed file (bad header, short row, a value that is not a float, an early end) raises
``VectorsFileError`` naming the file and the line. A word seen twice keeps its first vector,
as in gensim.

Where ours differs from gensim: the path arguments of the evaluations are called ``path``;
``most_similar_cosmul`` honours ``restrict_vocab`` (gensim accepts and ignores it); there is no
pickle-based ``save``/``load``: the vectors files above are the persistent form.

Shapes: ``vectors`` is ``(len(index_to_key), vector_size)`` float32; ``kv["word"]`` is
``(vector_size,)`` and ``kv[["a", "b"]]`` is ``(2, vector_size)``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from paperlab.errors import ArgumentError, ArgumentTypeError, PaperlabError

__all__ = ["KeyedVectors", "VectorsFileError"]

REAL = np.float32


class VectorsFileError(PaperlabError, ValueError):
    """A word2vec vectors file is malformed; the message names the file and the line."""

    def __init__(self, path: str | Path, line: int | None, reason: str) -> None:
        self.path, self.line, self.reason = str(path), line, reason
        where = f"{self.path}, line {line}" if line is not None else self.path
        super().__init__(f"{where}: {reason}")


def _ensure_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (str, np.ndarray)):
        return [value]
    return list(value)


def _unitvec(vec: np.ndarray) -> np.ndarray:
    norm = float(np.sqrt(np.dot(vec.astype(np.float64), vec.astype(np.float64))))
    return (vec / norm).astype(REAL) if norm > 0 else vec.astype(REAL)


class KeyedVectors:
    """A word -> vector table with gensim's queries (see the module docstring)."""

    def __init__(self, vector_size: int, count: int = 0, dtype: Any = REAL) -> None:
        if isinstance(vector_size, bool) or not isinstance(vector_size, (int, np.integer)):
            raise ArgumentTypeError(f"vector_size must be an int, got {vector_size!r}")
        if vector_size < 1:
            raise ArgumentError(f"vector_size must be >= 1, got {vector_size}")
        self.vector_size = int(vector_size)
        self.vectors = np.zeros((0, self.vector_size), dtype=dtype)
        self.index_to_key: list[str] = []
        self.key_to_index: dict[str, int] = {}
        self.counts = np.zeros(0, dtype=np.int64)
        self.norms: np.ndarray | None = None

    # ------------------------------------------------------------------------- the table

    @classmethod
    def from_vectors(
        cls, keys: Sequence[str], vectors: Any, counts: Sequence[int] | None = None
    ) -> KeyedVectors:
        """A table of ``keys`` (in order) and their rows ``vectors`` (V, D)."""
        array = np.asarray(vectors, dtype=REAL)
        if array.ndim != 2 or array.shape[0] != len(keys):
            raise ArgumentError(
                f"vectors must have shape ({len(keys)}, vector_size), got {tuple(array.shape)}"
            )
        kv = cls(array.shape[1])
        kv.add_vectors(keys, array, counts)
        return kv

    def add_vectors(
        self, keys: Sequence[str], weights: Any, counts: Sequence[int] | None = None
    ) -> None:
        """Append new keys with their vectors (keys already present are refused)."""
        keys = list(keys)
        array = np.asarray(weights, dtype=REAL).reshape(len(keys), -1)
        if array.shape[1] != self.vector_size:
            raise ArgumentError(f"weights must have {self.vector_size} columns, got {array.shape}")
        for key in keys:
            if not isinstance(key, str):
                raise ArgumentTypeError(f"keys must be str, got {type(key).__name__} {key!r}")
            if key in self.key_to_index:
                raise ArgumentError(f"key {key!r} is already in the vocabulary")
        start = len(self.index_to_key)
        for i, key in enumerate(keys):
            self.key_to_index[key] = start + i
        self.index_to_key.extend(keys)
        self.vectors = np.ascontiguousarray(np.concatenate([self.vectors, array]))
        if counts is None:  # gensim's stand-in counts: descending by position
            new = np.arange(len(keys), 0, -1, dtype=np.int64)
        else:
            new = np.asarray(counts, dtype=np.int64).reshape(len(keys))
        self.counts = np.concatenate([self.counts, new])
        self.norms = None

    def __len__(self) -> int:
        return len(self.index_to_key)

    def __contains__(self, key: object) -> bool:
        return key in self.key_to_index

    def has_index_for(self, key: object) -> bool:
        return key in self.key_to_index

    def get_index(self, key: str) -> int:
        """The row of ``key``; ``KeyError`` naming it if it is not in the vocabulary."""
        try:
            return self.key_to_index[key]
        except (KeyError, TypeError):
            raise KeyError(f"Key '{key}' not present in vocabulary") from None

    def get_vector(self, key: str, norm: bool = False) -> np.ndarray:
        index = self.get_index(key)
        if norm:
            self.fill_norms()
            assert self.norms is not None
            return self.vectors[index] / self.norms[index]
        return self.vectors[index]

    def __getitem__(self, key: str | Iterable[str]) -> np.ndarray:
        if isinstance(key, str):
            return self.get_vector(key)
        return np.vstack([self.get_vector(k) for k in key])

    def get_vecattr(self, key: str, attr: str) -> Any:
        """gensim's per-key attributes; only ``"count"`` is kept."""
        if attr != "count":
            raise ArgumentError(f"attr must be 'count', got {attr!r}")
        return int(self.counts[self.get_index(key)])

    def fill_norms(self, force: bool = False) -> None:
        if self.norms is None or force:
            self.norms = np.linalg.norm(self.vectors, axis=1)

    def get_normed_vectors(self) -> np.ndarray:
        self.fill_norms()
        assert self.norms is not None
        return self.vectors / self.norms[:, None]

    # ----------------------------------------------------------------------------- queries

    def _mean_query(self, items: list[Any], weights: np.ndarray) -> np.ndarray:
        """gensim's ``get_mean_vector(pre_normalize=True, post_normalize=True)``."""
        if not items:
            raise ArgumentError("positive and negative are both empty: nothing to compare with")
        mean = np.zeros(self.vector_size, dtype=REAL)
        total = 0.0
        for item, weight in zip(items, weights, strict=True):
            vec = item if isinstance(item, np.ndarray) else self.get_vector(item, norm=True)
            mean += weight * vec
            total += abs(float(weight))
        if total > 0:
            mean = mean / total
        return _unitvec(mean)

    def _split_weights(self, positive: Any, negative: Any) -> tuple[list[Any], np.ndarray]:
        positive, negative = _ensure_list(positive), _ensure_list(negative)
        weights = np.concatenate([np.ones(len(positive)), -np.ones(len(negative))])
        items = []
        for i, item in enumerate(positive + negative):
            if isinstance(item, tuple):
                items.append(item[0])
                weights[i] = item[1]
            else:
                items.append(item)
        return items, weights

    def _top(self, dists: np.ndarray, topn: int, exclude: set[int]) -> list[tuple[str, float]]:
        k = min(topn + len(exclude), dists.size)
        if k >= dists.size:
            best = np.argsort(-dists)[:k]
        else:  # gensim's matutils.argsort: partition, then sort the top
            part = np.argpartition(-dists, k)[:k]
            best = part[np.argsort(-dists[part])]
        out = [(self.index_to_key[i], float(dists[i])) for i in best if i not in exclude]
        return out[:topn]

    def most_similar(
        self,
        positive: Any = (),
        negative: Any = (),
        topn: int | None = 10,
        restrict_vocab: int | None = None,
    ) -> Any:
        """The ``topn`` (word, cosine) pairs nearest the 3CosAdd mean of the query.

        ``positive``/``negative``: a word, a vector, or a list of words, vectors or
        ``(word, weight)`` pairs. ``topn=None`` returns the array of all cosines.
        """
        if topn is not None and topn < 1:
            return []
        items, weights = self._split_weights(positive, negative)
        mean = self._mean_query(items, weights)
        exclude = {self.get_index(k) for k in items if isinstance(k, str)}
        self.fill_norms()
        assert self.norms is not None
        end = restrict_vocab if restrict_vocab else len(self.vectors)
        dists = np.dot(self.vectors[:end], mean) / self.norms[:end]
        if not topn:
            return dists
        return self._top(dists, topn, {i for i in exclude if i < end})

    def similar_by_word(self, word: str, topn: int = 10, restrict_vocab: int | None = None):
        return self.most_similar([word], topn=topn, restrict_vocab=restrict_vocab)

    def similar_by_vector(self, vector: Any, topn: int = 10, restrict_vocab: int | None = None):
        return self.most_similar(
            [np.asarray(vector, REAL)], topn=topn, restrict_vocab=restrict_vocab
        )

    def most_similar_cosmul(
        self,
        positive: Any = (),
        negative: Any = (),
        topn: int | None = 10,
        restrict_vocab: int | None = None,
    ) -> Any:
        """3CosMul: rank by prod_pos (1 + cos) / 2 / (prod_neg (1 + cos) / 2 + 1e-6)."""
        if topn is not None and topn < 1:
            return []
        positive, negative = _ensure_list(positive), _ensure_list(negative)
        if not positive:
            raise ArgumentError("positive must name at least one word")
        exclude = {self.get_index(w) for w in positive + negative if isinstance(w, str)}

        def unit(w: Any) -> np.ndarray:
            return self.get_vector(w, norm=True) if isinstance(w, str) else w

        pos, neg = [unit(w) for w in positive], [unit(w) for w in negative]
        self.fill_norms()
        assert self.norms is not None
        end = restrict_vocab if restrict_vocab else len(self.vectors)
        vecs, norms = self.vectors[:end], self.norms[:end]
        pos_d = [(1 + np.dot(vecs, t) / norms) / 2 for t in pos]
        neg_d = [(1 + np.dot(vecs, t) / norms) / 2 for t in neg]
        dists = np.prod(pos_d, axis=0) / (np.prod(neg_d, axis=0) + 0.000001)
        if not topn:
            return dists
        return self._top(dists, topn, {i for i in exclude if i < end})

    def similarity(self, w1: str, w2: str) -> float:
        """Cosine similarity of two words."""
        return float(np.dot(_unitvec(self[w1]), _unitvec(self[w2])))

    def distance(self, w1: str, w2: str) -> float:
        return 1 - self.similarity(w1, w2)

    def doesnt_match(self, words: Sequence[str]) -> str:
        """The word farthest (by cosine) from the normalised mean of the known ``words``."""
        used = [w for w in words if w in self]
        if not used:
            raise ArgumentError(f"words has no word in the vocabulary: {list(words)!r}")
        vecs = np.vstack([self.get_vector(w, norm=True) for w in used]).astype(REAL)
        mean = self._mean_query(list(vecs), np.ones(len(used)))
        return sorted(zip(np.dot(vecs, mean), used, strict=True), reverse=True)[-1][1]

    # ------------------------------------------------------------------------- evaluations

    def _ok_vocab(self, restrict_vocab: int, case_insensitive: bool) -> dict[str, int]:
        keys = self.index_to_key[:restrict_vocab]
        # reversed: the first (most frequent) case variant wins, as in gensim
        return {
            (k.upper() if case_insensitive else k): self.key_to_index[k] for k in reversed(keys)
        }

    def evaluate_word_analogies(
        self,
        path: str | Path,
        restrict_vocab: int = 300000,
        case_insensitive: bool = True,
        dummy4unknown: bool = False,
    ) -> tuple[float, list[dict[str, Any]]]:
        """word2vec's compute-accuracy: ``(accuracy, sections)``, sections ending with the total."""
        ok_vocab = self._ok_vocab(restrict_vocab, case_insensitive)
        sections: list[dict[str, Any]] = []
        section: dict[str, Any] | None = None
        self.fill_norms()
        assert self.norms is not None
        unit = self.vectors[:restrict_vocab] / self.norms[:restrict_vocab, None]
        with open(path, "rb") as fin:
            for line_no, raw in enumerate(fin):
                line = raw.decode("utf8")
                if line.startswith(": "):
                    if section:
                        sections.append(section)
                    section = {"section": line.lstrip(": ").strip(), "correct": [], "incorrect": []}
                    continue
                if not section:
                    raise VectorsFileError(path, line_no + 1, "missing ': section' header")
                words = [w.upper() for w in line.split()] if case_insensitive else line.split()
                if len(words) != 4:
                    continue  # gensim skips an invalid line
                a, b, c, expected = words
                if any(w not in ok_vocab for w in words):
                    if dummy4unknown:
                        section["incorrect"].append((a, b, c, expected))
                    continue
                ia, ib, ic = ok_vocab[a], ok_vocab[b], ok_vocab[c]
                mean = self._mean_query([unit[ib], unit[ic], unit[ia]], np.array([1.0, 1.0, -1.0]))
                end = min(restrict_vocab, len(self.vectors))
                dists = np.dot(self.vectors[:end], mean) / self.norms[:end]
                sims = self._top(dists, 5, {ia, ib, ic})
                predicted = None
                for word, _ in sims:
                    predicted = word.upper() if case_insensitive else word
                    if predicted in ok_vocab and predicted not in {a, b, c}:
                        break
                which = "correct" if predicted == expected else "incorrect"
                section[which].append((a, b, c, expected))
        if section:
            sections.append(section)
        total = {
            "section": "Total accuracy",
            "correct": list(itertools.chain.from_iterable(s["correct"] for s in sections)),
            "incorrect": list(itertools.chain.from_iterable(s["incorrect"] for s in sections)),
        }
        sections.append(total)
        n = len(total["correct"]) + len(total["incorrect"])
        return (len(total["correct"]) / n if n else 0.0), sections

    def evaluate_word_pairs(
        self,
        path: str | Path,
        delimiter: str = "\t",
        restrict_vocab: int = 300000,
        case_insensitive: bool = True,
        dummy4unknown: bool = False,
    ) -> tuple[tuple[float, float], tuple[float, float], float]:
        """``(pearson, spearman, oov_percent)`` against a word-pair similarity file."""
        from scipy import stats

        ok_vocab = self._ok_vocab(restrict_vocab, case_insensitive)
        gold: list[float] = []
        model: list[float] = []
        oov = 0
        with open(path, encoding="utf8") as fin:
            for line in fin:
                if not line or line.startswith("#"):
                    continue
                parts = line.split(delimiter)
                if case_insensitive:
                    parts = [p.upper() for p in parts]
                try:
                    a, b, sim_text = parts
                    sim = float(sim_text)
                except ValueError:
                    continue  # gensim skips an invalid line
                if a not in ok_vocab or b not in ok_vocab:
                    oov += 1
                    if dummy4unknown:
                        model.append(0.0)
                        gold.append(sim)
                    continue
                gold.append(sim)
                va, vb = self.vectors[ok_vocab[a]], self.vectors[ok_vocab[b]]
                model.append(float(np.dot(_unitvec(va), _unitvec(vb))))
        if not gold:
            raise VectorsFileError(path, None, "no word pair with both words in the vocabulary")
        spearman = stats.spearmanr(gold, model)
        pearson = stats.pearsonr(gold, model)
        oov_ratio = float(oov) / (len(gold) if dummy4unknown else len(gold) + oov) * 100
        return (
            (float(pearson[0]), float(pearson[1])),
            (float(spearman[0]), float(spearman[1])),
            oov_ratio,
        )

    # ------------------------------------------------------------------------------- files

    def save_word2vec_format(self, fname: str | Path, binary: bool = False) -> None:
        """Write the table in word2vec.c's text or binary format, in vocabulary order."""
        with open(fname, "wb") as fout:
            fout.write(f"{len(self)} {self.vector_size}\n".encode())
            for key, row in zip(self.index_to_key, self.vectors.astype(REAL), strict=True):
                if binary:
                    fout.write(key.encode() + b" " + row.astype("<f4").tobytes() + b"\n")
                else:
                    fout.write(f"{key} {' '.join(str(v) for v in row)}\n".encode())

    @classmethod
    def load_word2vec_format(
        cls,
        fname: str | Path,
        binary: bool = False,
        encoding: str = "utf8",
        unicode_errors: str = "strict",
        limit: int | None = None,
    ) -> KeyedVectors:
        """Read a word2vec.c text or binary vectors file (``limit``: only the first rows)."""
        with open(fname, "rb") as fin:
            header = fin.readline()
            try:
                count, size = (int(x) for x in header.decode(encoding).split())
                if count < 0 or size < 1:
                    raise ValueError
            except ValueError:
                raise VectorsFileError(
                    fname, 1, f"header must be '<count> <dim>', got {header[:80]!r}"
                ) from None
            if limit is not None:
                count = min(count, limit)
            reader = _read_binary if binary else _read_text
            keys, rows = reader(fin, fname, count, size, encoding, unicode_errors)
        kv = cls(size)
        kv.index_to_key = keys
        kv.key_to_index = {k: i for i, k in enumerate(keys)}
        kv.vectors = rows
        kv.counts = np.arange(count, count - len(keys), -1, dtype=np.int64)
        return kv


def _keep(keys: list[str], seen: dict[str, int], word: str) -> bool:
    if word in seen:
        return False  # a duplicate keeps its first vector, as gensim
    seen[word] = len(keys)
    keys.append(word)
    return True


def _read_text(fin, fname, count, size, encoding, unicode_errors):
    keys: list[str] = []
    seen: dict[str, int] = {}
    rows = np.empty((count, size), dtype=REAL)
    for i in range(count):
        line_no = i + 2
        raw = fin.readline()
        if not raw:
            raise VectorsFileError(fname, line_no, f"file ends after {i} of {count} vectors")
        parts = raw.decode(encoding, errors=unicode_errors).rstrip().split(" ")
        if len(parts) != size + 1:
            raise VectorsFileError(
                fname, line_no, f"expected a word and {size} values, got {len(parts) - 1} values"
            )
        try:
            values = [float(x) for x in parts[1:]]
        except ValueError as exc:
            raise VectorsFileError(fname, line_no, f"not a float: {exc}") from None
        if _keep(keys, seen, parts[0]):
            rows[len(keys) - 1] = values
    return keys, np.ascontiguousarray(rows[: len(keys)])


def _read_binary(fin, fname, count, size, encoding, unicode_errors):
    keys: list[str] = []
    seen: dict[str, int] = {}
    rows = np.empty((count, size), dtype=REAL)
    width = 4 * size
    buffer = b""
    start = 0
    for i in range(count):
        line_no = i + 2  # the i-th record, counted like a text file's lines
        while True:
            space = buffer.find(b" ", start)
            if space != -1 and len(buffer) - space - 1 >= width:
                break
            more = fin.read(1 << 20)
            if not more:
                raise VectorsFileError(fname, line_no, f"file ends after {i} of {count} vectors")
            buffer, start = buffer[start:] + more, 0
        try:
            word = buffer[start:space].decode(encoding, errors=unicode_errors).lstrip("\n")
        except UnicodeDecodeError as exc:
            raise VectorsFileError(fname, line_no, f"word is not {encoding}: {exc}") from None
        vector = np.frombuffer(buffer, dtype="<f4", count=size, offset=space + 1)
        if not np.all(np.isfinite(vector)):
            raise VectorsFileError(fname, line_no, f"vector of {word!r} is not finite")
        if _keep(keys, seen, word):
            rows[len(keys) - 1] = vector
        start = space + 1 + width
    return keys, np.ascontiguousarray(rows[: len(keys)])
