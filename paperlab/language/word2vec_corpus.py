"""Word2Vec's corpus (note D1): sentences from a re-iterable or a text file, streamed.

``Word2Vec`` takes ``sentences`` (any re-iterable of token lists, read once per epoch) or
``corpus_file`` (plain text, one sentence per line, whitespace-separated tokens). The file is
read in blocks of 1 MB, never whole, and a line longer than ``MAX_SENTENCE_LEN`` (10000)
words comes out in pieces of that many words, as gensim and word2vec.c cut long sentences.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from paperlab.errors import ArgumentError, ArgumentTypeError

__all__ = ["MAX_SENTENCE_LEN", "check_sentence", "corpus_sentences", "iter_corpus_file"]

MAX_SENTENCE_LEN = 10000  # gensim's (and word2vec.c's) longest sentence; longer ones split


def check_sentence(sentence: Any, where: str) -> Any:
    """``sentence`` itself, or a clear error when it is a string instead of a token list."""
    if isinstance(sentence, (str, bytes)):
        raise ArgumentTypeError(
            f"sentences must yield lists of tokens, got a {type(sentence).__name__} at {where}"
            " (split your text into words first)"
        )
    return sentence


def iter_corpus_file(path: str | Path, block: int = 1 << 20) -> Iterator[list[str]]:
    """Sentences of a text file (one per line, whitespace-separated), read block by block.

    A line longer than ``MAX_SENTENCE_LEN`` words comes out in pieces of that many words, so a
    file with one huge line (text8) streams too.
    """
    with open(path, "rb") as fin:
        rest = b""
        while True:
            data = fin.read(block)
            if not data:
                break
            data = rest + data
            lines = data.split(b"\n")
            rest = lines.pop()
            if len(rest) > block:  # a very long line: emit all but its last (partial) token
                cut = max(rest.rfind(b" "), rest.rfind(b"\t"))
                if cut > 0:
                    lines.append(rest[:cut])
                    rest = rest[cut + 1 :]
            for line in lines:
                words = line.decode("utf8", errors="replace").split()
                for s in range(0, len(words), MAX_SENTENCE_LEN):
                    yield words[s : s + MAX_SENTENCE_LEN]
        words = rest.decode("utf8", errors="replace").split()
        for s in range(0, len(words), MAX_SENTENCE_LEN):
            yield words[s : s + MAX_SENTENCE_LEN]


def corpus_sentences(
    sentences: Iterable[Any] | None, corpus_file: str | Path | None
) -> Iterable[Any]:
    if (sentences is None) == (corpus_file is None):
        raise ArgumentError("pass exactly one of sentences and corpus_file")
    if corpus_file is not None:
        if not Path(corpus_file).is_file():
            raise ArgumentError(f"corpus_file {str(corpus_file)!r} is not a file")

        class _Reiterable:
            def __iter__(self) -> Iterator[list[str]]:
                return iter_corpus_file(corpus_file)

        return _Reiterable()
    if iter(sentences) is sentences:  # type: ignore[arg-type]
        raise ArgumentTypeError(
            "sentences must be re-iterable (a list, or an object whose __iter__ starts over);"
            " got a one-shot iterator or generator"
        )
    return sentences  # type: ignore[return-value]
