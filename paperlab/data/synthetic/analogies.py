"""A corpus with planted analogies for word2vec (note D1): capitals, gender, plurals.

Each relation has pairs ``(a_i, b_i)`` (France/Paris, king/queen, car/cars) and two sets of
*role words* (one for the a side, one for the b side). A sentence about ``a_i`` mixes a
role word of the a side, two *topic words* private to pair i, and noise words; a sentence
about ``b_i`` the same with a b-side role word. Distributionally, then,
``v(b_i) - v(a_i)`` is the same offset for every pair (the role difference) while the topic
words tie ``a_i`` to ``b_i``: the structure behind Mikolov's parallel country-capital offsets,
planted on purpose. Analogy questions are every ordered pair of pairs of a relation:
``a_i b_i a_j b_j`` in questions-words.txt format (``: section`` lines).

Noise: a vocabulary of filler words drawn from a Zipf law is mixed into every sentence, and
whole filler sentences are added, so the planted words are a minority of the tokens.

``analogy_corpus(n_sentences, seed)`` returns the tokenised sentences and the question
sections; ``write_questions(sections, path)`` writes them for
``KeyedVectors.evaluate_word_analogies``; ``write_corpus`` writes the sentences one per line.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from paperlab.errors import ArgumentError

__all__ = ["RELATIONS", "AnalogyCorpus", "analogy_corpus", "write_corpus", "write_questions"]

RELATIONS: dict[str, dict[str, object]] = {
    "capital-world": {
        "pairs": [
            ("france", "paris"), ("germany", "berlin"), ("italy", "rome"), ("spain", "madrid"),
            ("japan", "tokyo"), ("china", "beijing"), ("russia", "moscow"), ("egypt", "cairo"),
            ("greece", "athens"), ("norway", "oslo"), ("poland", "warsaw"), ("kenya", "nairobi"),
        ],
        "roles": (("country", "nation", "state"), ("city", "capital", "town")),
    },
    "family": {
        "pairs": [
            ("king", "queen"), ("man", "woman"), ("boy", "girl"), ("brother", "sister"),
            ("father", "mother"), ("son", "daughter"), ("uncle", "aunt"), ("husband", "wife"),
            ("prince", "princess"), ("nephew", "niece"),
        ],
        "roles": (("he", "him", "his"), ("she", "her", "hers")),
    },
    "plural-nouns": {
        "pairs": [
            ("car", "cars"), ("dog", "dogs"), ("apple", "apples"), ("house", "houses"),
            ("bird", "birds"), ("tree", "trees"), ("book", "books"), ("horse", "horses"),
            ("river", "rivers"), ("chair", "chairs"),
        ],
        "roles": (("one", "a", "single"), ("many", "several", "some")),
    },
}  # fmt: skip


@dataclass
class AnalogyCorpus:
    """Sentences (lists of tokens) and analogy sections ``{name: [(a, b, c, d), ...]}``."""

    sentences: list[list[str]]
    sections: dict[str, list[tuple[str, str, str, str]]]
    pairs: dict[str, list[tuple[str, str]]]

    @property
    def n_words(self) -> int:
        return sum(len(s) for s in self.sentences)


def analogy_corpus(
    n_sentences: int = 20000,
    seed: int = 0,
    *,
    n_noise: int = 300,
    noise_per_sentence: int = 3,
    filler_fraction: float = 0.2,
) -> AnalogyCorpus:
    """Generate the corpus (deterministic in ``seed``); see the module docstring."""
    if n_sentences < 1:
        raise ArgumentError(f"n_sentences must be >= 1, got {n_sentences}")
    if n_noise < 1 or noise_per_sentence < 0 or not 0 <= filler_fraction < 1:
        raise ArgumentError(
            "need n_noise >= 1, noise_per_sentence >= 0 and 0 <= filler_fraction < 1, got "
            f"{n_noise}, {noise_per_sentence}, {filler_fraction}"
        )
    rng = random.Random(seed)
    noise = [f"w{i:03d}" for i in range(n_noise)]
    zipf = [1.0 / (r + 1) for r in range(n_noise)]

    def filler(k: int) -> list[str]:
        return rng.choices(noise, weights=zipf, k=k)

    items = []  # (relation, pair index, side)
    for name, spec in RELATIONS.items():
        for i in range(len(spec["pairs"])):  # type: ignore[arg-type]
            items += [(name, i, 0), (name, i, 1)]
    sentences = []
    for _ in range(n_sentences):
        if rng.random() < filler_fraction:
            sentences.append(filler(rng.randint(4, 10)))
            continue
        name, i, side = rng.choice(items)
        spec = RELATIONS[name]
        word = spec["pairs"][i][side]  # type: ignore[index]
        role = rng.choice(spec["roles"][side])  # type: ignore[index]
        topic = [f"{name[:3]}{i}t{k}" for k in rng.sample(range(3), 2)]
        words = [role, word, *topic, *filler(noise_per_sentence)]
        rng.shuffle(words)
        sentences.append(words)
    sections = {}
    pairs = {}
    for name, spec in RELATIONS.items():
        ps = list(spec["pairs"])  # type: ignore[call-overload]
        pairs[name] = ps
        sections[name] = [(a, b, c, d) for (a, b) in ps for (c, d) in ps if (a, b) != (c, d)]
    return AnalogyCorpus(sentences, sections, pairs)


def write_questions(sections: dict[str, list[tuple[str, str, str, str]]], path: str | Path) -> Path:
    """Write analogy sections in questions-words.txt format (``: name`` then ``a b c d``)."""
    path = Path(path)
    with open(path, "w", encoding="utf8") as f:
        for name, questions in sections.items():
            f.write(f": {name}\n")
            for q in questions:
                f.write(" ".join(q) + "\n")
    return path


def write_corpus(sentences: list[list[str]], path: str | Path) -> Path:
    """Write sentences one per line, tokens separated by spaces (``corpus_file`` format)."""
    path = Path(path)
    with open(path, "w", encoding="utf8") as f:
        for s in sentences:
            f.write(" ".join(s) + "\n")
    return path
