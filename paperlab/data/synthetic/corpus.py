"""A synthetic grammar for masked language modelling (note D2): sentences whose masked words
are predictable from context, and some that are not.

Each sentence is ``DET [ADJ] NOUN [PREP DET' PLACE] VERB [ADV]``::

    these brown dogs near a tree bark loudly
    one cat under the houses meows

The rules a model has to learn (and a unigram model cannot):

- **number agreement**: the determiner agrees with the noun (``a/one/this/every`` with a
  singular, ``these/two/many/some`` with a plural), the verb agrees with the *subject*
  noun, across the prepositional phrase, whose own noun (the *attractor*) has an
  independent number -- the classic long-distance agreement test;
- **selection**: each species has its own verb (dogs bark, cats meow, ...), so a masked
  verb follows from the noun and a masked noun from the verb and the determiner.

Adjectives, prepositions, places and adverbs are drawn uniformly and independently: they
are the unpredictable part, which bounds the best possible MLM accuracy below 1.

``grammar_sentences(n, seed=...)`` is deterministic by seed; ``exclude`` keeps held-out
sentences out of a training set. ``grammar_words()`` lists the vocabulary (for
``paperlab.language.tokenizer.word_level_tokenizer``) and ``word_roles()`` each word's role.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

from torch.utils.data import Dataset

from paperlab.errors import ArgumentError, check_int
from paperlab.registry import export_dataset

# species: (singular, plural, verb with a singular subject, verb with a plural subject)
SPECIES = (
    ("dog", "dogs", "barks", "bark"),
    ("cat", "cats", "meows", "meow"),
    ("bird", "birds", "sings", "sing"),
    ("cow", "cows", "moos", "moo"),
    ("lion", "lions", "roars", "roar"),
    ("frog", "frogs", "croaks", "croak"),
    ("horse", "horses", "neighs", "neigh"),
    ("duck", "ducks", "quacks", "quack"),
)
DETERMINERS = {
    "singular": ("a", "one", "this", "every"),
    "plural": ("these", "two", "many", "some"),
}
PLACE_DETERMINERS = {"singular": ("the", "a"), "plural": ("the", "some")}
PLACES = (("tree", "trees"), ("house", "houses"), ("fence", "fences"), ("river", "rivers"))
ADJECTIVES = ("big", "small", "brown", "black", "white", "young", "old")
PREPOSITIONS = ("near", "behind", "under")
ADVERBS = ("loudly", "softly", "often", "rarely")


def grammar_words() -> list[str]:
    """Every word the grammar can produce, in a fixed order."""
    words: list[str] = []
    for group in (
        [w for s in SPECIES for w in s],
        [w for ws in DETERMINERS.values() for w in ws],
        [w for ws in PLACE_DETERMINERS.values() for w in ws],
        [w for p in PLACES for w in p],
        ADJECTIVES,
        PREPOSITIONS,
        ADVERBS,
    ):
        words.extend(w for w in group if w not in words)
    return words


def word_roles() -> dict[str, str]:
    """word -> role: noun, verb, det, place, adj, prep, adv (``the``/``a`` count as det)."""
    roles: dict[str, str] = {}
    for sg, pl, vsg, vpl in SPECIES:
        roles.update({sg: "noun", pl: "noun", vsg: "verb", vpl: "verb"})
    for p in PLACES:
        roles.update(dict.fromkeys(p, "place"))
    for ws in (*DETERMINERS.values(), *PLACE_DETERMINERS.values()):
        roles.update(dict.fromkeys(ws, "det"))
    roles.update(dict.fromkeys(ADJECTIVES, "adj"))
    roles.update(dict.fromkeys(PREPOSITIONS, "prep"))
    roles.update(dict.fromkeys(ADVERBS, "adv"))
    return roles


def sample_sentence(rng: random.Random) -> str:
    """One sentence of the grammar, drawn with ``rng``."""
    number = rng.choice(("singular", "plural"))
    sg, pl, vsg, vpl = rng.choice(SPECIES)
    words = [rng.choice(DETERMINERS[number])]
    if rng.random() < 0.5:
        words.append(rng.choice(ADJECTIVES))
    words.append(sg if number == "singular" else pl)
    if rng.random() < 0.5:
        place_number = rng.choice(("singular", "plural"))
        place = rng.choice(PLACES)
        words += [
            rng.choice(PREPOSITIONS),
            rng.choice(PLACE_DETERMINERS[place_number]),
            place[0] if place_number == "singular" else place[1],
        ]
    words.append(vsg if number == "singular" else vpl)
    if rng.random() < 0.5:
        words.append(rng.choice(ADVERBS))
    return " ".join(words)


def grammar_sentences(n: int, *, seed: int = 0, exclude: Iterable[str] = ()) -> list[str]:
    """``n`` sentences, deterministic by ``seed``, none of them in ``exclude``."""
    check_int("n", n, minimum=0)
    skip = set(exclude)
    rng = random.Random(seed)
    out: list[str] = []
    tries = 0
    while len(out) < n:
        s = sample_sentence(rng)
        tries += 1
        if s not in skip:
            out.append(s)
        elif tries > 100 * (n + 1):
            raise ArgumentError(f"exclude covers almost every sentence; drew {tries} in vain")
    return out


@export_dataset("grammar-corpus", note="D2", tags=("language", "synthetic"))
class GrammarCorpus(Dataset):
    """``n`` grammar sentences (``str`` items), deterministic by ``seed``; see the module."""

    def __init__(self, n: int, *, seed: int = 0, exclude: Iterable[str] = ()) -> None:
        self.sentences = grammar_sentences(n, seed=seed, exclude=exclude)

    def __len__(self) -> int:
        return len(self.sentences)

    def __getitem__(self, index: int) -> str:
        return self.sentences[index]


__all__ = [
    "GrammarCorpus",
    "grammar_sentences",
    "grammar_words",
    "sample_sentence",
    "word_roles",
]
