"""CircularEval (note H2): a multiple-choice question passes only under every rotation.

The idea
--------
A multiple-choice benchmark scored once per question flatters a model with a bias: one that
answers "A" whenever it is unsure gets every question whose answer happens to be A, and one
that picks the longest option gets every question whose right answer is the longest. MMBench
(Liu et al., 2023, "MMBench: Is Your Multi-modal Model an All-around Player?") asks each
question N times, once per circular shift of its N options, and counts it right only if all N
answers are right. The right answer then sits at every position once, so a position bias no
longer pays, and the chance of passing by guessing falls from 1/N to (1/N)^N (1/256 for four
options).

For options ``o_0 .. o_{N-1}`` (letter ``A`` first) and shift ``k = 0 .. N-1`` the shown
options are

    shown_k[i] = o_{(i + k) mod N},      so the answer at index a moves to (a - k) mod N.

Shift 0 is the original ordering; its score alone is the *vanilla* accuracy.

Answers are matched by rules, as VLMEvalKit's ``can_infer`` does (no LLM judge):
``extract_choice(prediction, options)``

1. replaces each of ``.()[],:;!*#{}`` by a space and splits on whitespace; if exactly one of
   the option letters (``A``, ``B``, ... upper case, as whole tokens) appears, that letter;
2. else, if the prediction is at most twice as long as all option texts together and exactly
   one option text occurs in it (case-insensitive substring), that option's letter;
3. else ``None``: unmatched, scored wrong and counted.

VLMEvalKit's special cases for API failures, canned refusals and the "Z" (none of these)
answer are left out: they concern chat models behind an API, which paperlab has none of.

Data: a question is a dict with ``index``, ``question``, ``options`` (the option texts, A
first), ``answer`` (the right letter) and optionally ``hint``, ``category``,
``l2-category`` and anything else (an image, say), which is passed on to the answerer.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from paperlab.errors import ArgumentError, ArgumentTypeError

LETTERS = string.ascii_uppercase
PUNCTUATION = ".()[],:;!*#{}"  # VLMEvalKit's can_infer_option replaces these by spaces
GROUPS = ("category", "l2-category")


# --- answer matching -------------------------------------------------------------------------


def option_letters(n: int) -> str:
    """The first ``n`` option letters: ``option_letters(4) == "ABCD"``."""
    if not 1 <= n <= len(LETTERS):
        raise ArgumentError(f"a question has 1..{len(LETTERS)} options, got {n}")
    return LETTERS[:n]


def _check_options(options: Any) -> list[str]:
    if isinstance(options, (str, bytes)) or not isinstance(options, Sequence):
        raise ArgumentTypeError(f"options must be a list of option texts, got "
                                f"{type(options).__name__}")
    if not options:
        raise ArgumentError("options must hold at least one option text, got none")
    for i, o in enumerate(options):
        if not isinstance(o, str):
            raise ArgumentTypeError(f"options[{i}] must be a str, got {type(o).__name__}")
    option_letters(len(options))
    return list(options)


def letter_in_tokens(prediction: str, letters: str) -> str | None:
    """Rule 1: the one option letter standing as a token once punctuation is stripped."""
    text = prediction
    for c in PUNCTUATION:
        text = text.replace(c, " ")
    tokens = set(text.split())
    found = [ch for ch in letters if ch in tokens]
    return found[0] if len(found) == 1 else None


def text_in_prediction(prediction: str, options: Sequence[str]) -> str | None:
    """Rule 2: the one option whose text occurs in the prediction (case-insensitive), when
    the prediction is no longer than twice all option texts together."""
    low = prediction.lower()
    if len(low) > 2 * sum(len(o) for o in options):
        return None
    found = [LETTERS[i] for i, o in enumerate(options) if o.lower() in low]
    return found[0] if len(found) == 1 else None


def extract_choice(prediction: str, options: Sequence[str]) -> str | None:
    """The option letter a free-text ``prediction`` names, or ``None`` when it names none or
    several (rules in the module docstring)."""
    if not isinstance(prediction, str):
        raise ArgumentTypeError(f"prediction must be a str, got {type(prediction).__name__}")
    options = _check_options(options)
    letters = option_letters(len(options))
    return letter_in_tokens(prediction, letters) or text_in_prediction(prediction, options)


# --- rotations -------------------------------------------------------------------------------


def rotate(options: Sequence[str], answer: str, shift: int) -> tuple[list[str], str]:
    """Options shifted circularly by ``shift`` (``shown[i] = options[(i + shift) % N]``) and
    the letter the answer moves to."""
    options = _check_options(options)
    n = len(options)
    letters = option_letters(n)
    if answer not in letters:
        raise ArgumentError(f"answer must be one of {', '.join(letters)}, got {answer!r}")
    k = shift % n
    return options[k:] + options[:k], letters[(letters.index(answer) - k) % n]


def circular_variants(question: Mapping[str, Any]) -> list[tuple[dict[str, Any], str]]:
    """The N shifts of one question: (the copy an answerer sees, without ``answer``; the
    right letter for it), shift 0 first."""
    q = check_question(question)
    out = []
    for k in range(len(q["options"])):
        options, answer = rotate(q["options"], q["answer"], k)
        shown = {key: v for key, v in q.items() if key != "answer"}
        shown["options"] = options
        out.append((shown, answer))
    return out


def check_question(question: Any, where: str = "question") -> dict[str, Any]:
    """A question dict with its required keys checked (naming ``where`` in the error)."""
    if not isinstance(question, Mapping):
        raise ArgumentTypeError(f"{where} must be a dict, got {type(question).__name__}")
    for key in ("index", "question", "options", "answer"):
        if key not in question:
            raise ArgumentError(f"{where} has no {key!r} (keys: {', '.join(map(str, question))})")
    try:
        options = _check_options(question["options"])
    except (ArgumentError, ArgumentTypeError) as exc:
        raise type(exc)(f"{where} (index {question['index']!r}): {exc}") from None
    letters = option_letters(len(options))
    if question["answer"] not in letters:
        raise ArgumentError(f"{where} (index {question['index']!r}): answer must be one of "
                            f"{', '.join(letters)}, got {question['answer']!r}")
    return {**question, "options": options}


# --- the protocol ----------------------------------------------------------------------------


def _score(rows: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(rows)
    return {
        "n": n,
        "vanilla": sum(r["vanilla"] for r in rows) / n if n else float("nan"),
        "circular": sum(r["circular"] for r in rows) / n if n else float("nan"),
    }


def circular_eval(
    questions: Sequence[Mapping[str, Any]], answer_fn: Callable[[dict[str, Any]], str]
) -> dict[str, Any]:
    """Vanilla and CircularEval accuracy of ``answer_fn`` on ``questions``.

    ``answer_fn(shown)`` gets a copy of a question with its options rotated and ``answer``
    removed, and returns a letter or free text (matched by ``extract_choice``). Returns

    - ``"vanilla"``: accuracy on shift 0 (the original ordering) alone;
    - ``"circular"``: fraction of questions right under every shift;
    - ``"per_category"``: ``{"category": {name: {"n", "vanilla", "circular"}},
      "l2-category": {...}}`` for the questions that carry those keys;
    - ``"unmatched"``: how many answers (over all shifts) named no single option;
    - ``"n"``: the number of questions, ``"calls"`` the number of answers asked for, and
      ``"per_question"``: per question its index, the letters given per shift, and whether it
      passed vanilla and circular.
    """
    if isinstance(questions, Mapping) or not isinstance(questions, Sequence):
        raise ArgumentTypeError(f"questions must be a list of question dicts, got "
                                f"{type(questions).__name__}")
    if not callable(answer_fn):
        raise ArgumentTypeError(f"answer_fn must be callable, got {type(answer_fn).__name__}")
    checked = [check_question(q, f"questions[{i}]") for i, q in enumerate(questions)]
    seen: set[Any] = set()
    for i, q in enumerate(checked):
        if q["index"] in seen:
            raise ArgumentError(f"questions[{i}]: index {q['index']!r} appears twice")
        seen.add(q["index"])
    rows, unmatched, calls = [], 0, 0
    for q in checked:
        given, right = [], []
        for shown, answer in circular_variants(q):
            reply = answer_fn(shown)
            calls += 1
            if not isinstance(reply, str):
                raise ArgumentTypeError(f"answer_fn must return a str, got "
                                        f"{type(reply).__name__} for question {q['index']!r}")
            letter = extract_choice(reply, shown["options"])
            unmatched += letter is None
            given.append(letter)
            right.append(letter == answer)
        row = {"index": q["index"], "given": given, "vanilla": right[0], "circular": all(right)}
        for g in GROUPS:
            if g in q and q[g] is not None:
                row[g] = q[g]
        rows.append(row)
    out = _score(rows)
    per_category: dict[str, dict[str, Any]] = {}
    for g in GROUPS:
        names = sorted({r[g] for r in rows if g in r}, key=str)
        if names:
            per_category[g] = {name: _score([r for r in rows if r.get(g) == name])
                               for name in names}
    return {
        "vanilla": out["vanilla"],
        "circular": out["circular"],
        "per_category": per_category,
        "unmatched": unmatched,
        "n": out["n"],
        "calls": calls,
        "per_question": rows,
    }


def guess_pass_rate(n_options: int) -> tuple[float, float]:
    """Chance of a uniform random guesser: (vanilla 1/N, circular (1/N)^N)."""
    option_letters(n_options)
    return 1.0 / n_options, (1.0 / n_options) ** n_options
