"""The synthetic grammar corpus: deterministic, held-out exclusion, and its rules hold."""

from __future__ import annotations

import random

import pytest

from paperlab.data.synthetic.corpus import (
    DETERMINERS,
    SPECIES,
    GrammarCorpus,
    grammar_sentences,
    grammar_words,
    sample_sentence,
    word_roles,
)
from paperlab.errors import ArgumentError, ArgumentTypeError


def test_deterministic_by_seed_and_exclusion():
    a, b = grammar_sentences(300, seed=4), grammar_sentences(300, seed=4)
    assert a == b and a != grammar_sentences(300, seed=5)
    held = set(grammar_sentences(200, seed=1))
    train = grammar_sentences(2000, seed=2, exclude=held)
    assert len(train) == 2000 and not held & set(train)
    corpus = GrammarCorpus(50, seed=4)
    assert len(corpus) == 50 and corpus[0] == a[0]


def test_every_sentence_obeys_agreement_and_selection():
    roles = word_roles()
    assert set(roles) == set(grammar_words())
    verb_of = {sg: vsg for sg, _, vsg, _ in SPECIES} | {pl: vpl for _, pl, _, vpl in SPECIES}
    rng = random.Random(0)
    with_attractor = 0
    for _ in range(2000):
        words = sample_sentence(rng).split()
        assert all(w in roles for w in words)
        nouns = [w for w in words if roles[w] == "noun"]
        verbs = [w for w in words if roles[w] == "verb"]
        assert len(nouns) == 1 and len(verbs) == 1
        assert verbs[0] == verb_of[nouns[0]]  # species and number agree
        plural = nouns[0].endswith("s")
        assert words[0] in DETERMINERS["plural" if plural else "singular"]
        with_attractor += any(roles[w] == "place" for w in words)
    assert 800 < with_attractor < 1200  # half the sentences carry the attractor phrase


def test_bad_arguments():
    with pytest.raises(ArgumentTypeError):
        grammar_sentences(2.5)
    with pytest.raises(ArgumentError, match="n must be >= 0"):
        grammar_sentences(-1)
