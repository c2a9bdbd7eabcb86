"""CircularEval: rotations, moving answer letters, known answerers, VLMEvalKit's matching rules."""

from __future__ import annotations

import random

import pytest

from paperlab.errors import ArgumentError, ArgumentTypeError
from paperlab.evaluation.circular import (
    circular_eval,
    circular_variants,
    extract_choice,
    guess_pass_rate,
    rotate,
)

pytestmark = pytest.mark.note("H2", reference="definition; VLMEvalKit can_infer rules")

OPTIONS = ["red", "green", "blue", "yellow"]


def _question(i: int, answer: str = "B", **extra) -> dict:
    return {"index": i, "question": "What colour is the circle?", "options": list(OPTIONS),
            "answer": answer, **extra}


def test_rotations_move_the_answer_with_its_text():
    q = _question(0, "B")
    variants = circular_variants(q)
    assert [v[0]["options"] for v in variants] == [
        ["red", "green", "blue", "yellow"],
        ["green", "blue", "yellow", "red"],
        ["blue", "yellow", "red", "green"],
        ["yellow", "red", "green", "blue"],
    ]
    assert [a for _, a in variants] == ["B", "A", "D", "C"]
    for shown, answer in variants:
        assert "answer" not in shown
        assert shown["options"]["ABCD".index(answer)] == "green"
    assert q["options"] == OPTIONS and q["answer"] == "B"  # the input is untouched


@pytest.mark.parametrize("n", [2, 3, 5])
def test_every_position_holds_the_answer_once(n):
    opts = [f"o{i}" for i in range(n)]
    for a in "ABCDE"[:n]:
        letters = [rotate(opts, a, k)[1] for k in range(n)]
        assert sorted(letters) == list("ABCDE"[:n])
    assert rotate(opts, "A", n) == rotate(opts, "A", 0)


def test_an_oracle_passes_and_always_a_is_exposed():
    qs = [_question(i, "ABCD"[i % 4], category="colour", **{"l2-category": "attribute"})
          for i in range(8)]
    truth = {q["index"]: q["options"]["ABCD".index(q["answer"])] for q in qs}
    oracle = circular_eval(qs, lambda s: "ABCD"[s["options"].index(truth[s["index"]])])
    assert oracle["vanilla"] == oracle["circular"] == 1.0 and oracle["unmatched"] == 0
    always_a = circular_eval(qs, lambda s: "A")
    assert always_a["vanilla"] == 0.25 and always_a["circular"] == 0.0
    assert always_a["calls"] == 32
    cat = always_a["per_category"]
    assert cat["category"]["colour"] == {"n": 8, "vanilla": 0.25, "circular": 0.0}
    assert cat["l2-category"]["attribute"]["n"] == 8


def test_one_wrong_shift_fails_the_question():
    qs = [_question(0, "C")]
    calls = []

    def answer(shown):
        calls.append(shown["options"])
        right = "ABCD"[shown["options"].index("blue")]
        return "D" if len(calls) == 3 else right  # wrong on the third shift only

    r = circular_eval(qs, answer)
    assert r["vanilla"] == 1.0 and r["circular"] == 0.0
    assert r["per_question"][0]["given"][:2] == ["C", "B"]


def test_random_guesser_matches_the_computed_rates():
    rng = random.Random(0)
    qs = [_question(i, rng.choice("ABCD")) for i in range(4000)]
    r = circular_eval(qs, lambda s: rng.choice("ABCD"))
    vanilla, circular = guess_pass_rate(4)
    assert circular == 1 / 256
    assert abs(r["vanilla"] - vanilla) < 4 * (vanilla * (1 - vanilla) / 4000) ** 0.5
    assert abs(r["circular"] - circular) < 4 * (circular * (1 - circular) / 4000) ** 0.5


def test_unmatched_answers_are_wrong_and_counted():
    r = circular_eval([_question(0, "A")], lambda s: "no idea")
    assert r["unmatched"] == 4 and r["vanilla"] == 0.0 and r["per_question"][0]["given"] == [
        None] * 4


@pytest.mark.parametrize(
    ("prediction", "expected"),
    [
        ("B", "B"),
        ("(C)", "C"),
        ("The answer is D.", "D"),
        ("A: red", "A"),
        ("**B**", "B"),
        ("A or B", None),  # two letters, and neither option text
        ("b", None),  # letters are upper case
        ("green", "B"),
        ("It is GREEN", "B"),
        ("red and green", None),  # two option texts
        ("A green", "A"),  # rule 1 comes first (VLMEvalKit would log "A might be a quantifier")
        ("blue, definitely blue", "C"),
        ("purple", None),
        ("the colour of this object is obviously green, I am sure", None),  # too long for rule 2
    ],
)
def test_extract_choice_rules(prediction, expected):
    assert extract_choice(prediction, OPTIONS) == expected


def test_extract_choice_only_knows_the_letters_of_its_options():
    assert extract_choice("E", OPTIONS) is None
    assert extract_choice("E", OPTIONS + ["cyan"]) == "E"


def test_bad_input_names_the_argument():
    with pytest.raises(ArgumentError, match="answer"):
        circular_eval([_question(0, "E")], lambda s: "A")
    with pytest.raises(ArgumentError, match="options"):
        circular_eval([{**_question(0), "options": []}], lambda s: "A")
    with pytest.raises(ArgumentError, match="twice"):
        circular_eval([_question(0), _question(0)], lambda s: "A")
    with pytest.raises(ArgumentError, match="question"):
        circular_eval([{"index": 0, "options": OPTIONS, "answer": "A"}], lambda s: "A")
    with pytest.raises(ArgumentTypeError, match="answer_fn"):
        circular_eval([_question(0)], lambda s: 3)
    with pytest.raises(ArgumentTypeError, match="prediction"):
        extract_choice(None, OPTIONS)
