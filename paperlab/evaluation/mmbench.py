"""The MMBench format (note H2): a TSV of multiple-choice image questions, and a shapes benchmark.

The format
----------
MMBench (Liu et al., 2023) ships each split as one tab-separated file, one question a row,
read by VLMEvalKit with ``pandas.read_csv(path, sep="\\t")``. The columns used here:

    index  question  hint  A  B  C  D  E  answer  category  l2-category  image

``A``..``E`` hold the option texts (empty where a question has fewer), ``answer`` the right
letter, ``image`` the image file's bytes (PNG or JPEG) in base64. Other columns are kept as
they are. ``read_mmbench`` gives the question dicts ``evaluation/circular.py`` takes
(``options`` a list, A first; ``image`` still base64 -- ``decode_image`` opens it);
``write_mmbench`` writes them back. Bad rows raise ``DataFormatError`` naming the file and the
row's line.

A benchmark of our own
----------------------
``shapes_questions`` asks questions about ``data/synthetic/shapes.py`` images, four options
each, in four categories (l2-category in brackets):

- ``colour`` (attribute): "What colour is the circle?"          options: colour names
- ``shape`` (attribute): "What shape is the red object?"        options: shape names
- ``position`` (spatial): "Where is the red circle?"            options: positions
- ``count`` (counting): "How many objects are in the image?"    options: "1" .. "4"

The right option's letter is drawn uniformly, so the benchmark itself carries no position
bias. ``write_shapes_benchmark`` writes them as an MMBench TSV.

Answering with our models
-------------------------
An answerer is ``answer_fn(shown) -> str`` (``circular.circular_eval``). Each option becomes
captions of the shapes grammar (``option_prompts``: "What colour is the circle?" with option
"red" -> "a SIZE red circle at the POSITION" for every size and position, an ensemble as in
zero-shot CLIP), then

- ``similarity_answerer``: CLIP / SigLIP (or BLIP's ITC): cosine of the image embedding with
  each option's mean prompt embedding; the best option's letter;
- ``itm_answerer``: BLIP's image-text matching margin, averaged over an option's prompts;
- ``caption_answerer``: BLIP captions the image (greedy) and the caption is returned as free
  text for ``extract_choice`` to match ("a small red circle at the top left" names "red").
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import random
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from paperlab.data.formats.common import DataFormatError
from paperlab.data.synthetic.shapes import COLORS, POSITIONS, SHAPES, SIZES, render_sample
from paperlab.errors import ArgumentError, ArgumentTypeError, check_int
from paperlab.evaluation.circular import LETTERS, check_question

COLUMNS = ("index", "question", "hint", "A", "B", "C", "D", "E", "answer", "category",
           "l2-category", "image")
REQUIRED = ("index", "question", "A", "B", "answer")
OPTION_COLUMNS = tuple("ABCDE")
CATEGORIES = {"colour": "attribute", "shape": "attribute", "position": "spatial",
              "count": "counting"}


# --- the TSV ---------------------------------------------------------------------------------


def _row_to_question(row: dict[str, str], where: str) -> dict[str, Any]:
    options = []
    for ch in OPTION_COLUMNS:
        text = row.get(ch) or ""
        if not text:
            break
        options.append(text)
    for ch in OPTION_COLUMNS[len(options):]:
        if row.get(ch):
            raise DataFormatError(
                where, None, f"option {ch} is given but an earlier option is empty")
    index: Any = row["index"]
    if re.fullmatch(r"-?\d+", index.strip()):
        index = int(index)
    q: dict[str, Any] = {"index": index, "question": row["question"], "options": options,
                         "answer": row["answer"].strip()}
    for key, value in row.items():
        if key in OPTION_COLUMNS or key in q or key is None:
            continue
        if value != "":
            q[key] = value
    if q.get("image"):
        try:
            base64.b64decode(q["image"], validate=True)
        except (binascii.Error, ValueError):
            raise DataFormatError(where, None, "image is not valid base64") from None
    try:
        check_question(q, where)
    except (ArgumentError, ArgumentTypeError) as exc:
        raise DataFormatError(where, None, str(exc).removeprefix(f"{where}: ")) from None
    return q


def read_mmbench(path: str | Path) -> list[dict[str, Any]]:
    """The questions of an MMBench TSV as dicts (``options`` a list, A first)."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, None, "no such file")
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f, delimiter="\t")
        header = reader.fieldnames or []
        missing = [c for c in REQUIRED if c not in header]
        if missing:
            raise DataFormatError(path, None, f"header lacks column(s) {', '.join(missing)} "
                              f"(has {', '.join(header) or 'nothing'})")
        out, seen = [], set()
        for row in reader:
            where = f"{path}, line {reader.line_num}"
            if None in row or any(v is None for v in row.values()):
                raise DataFormatError(where, None, f"{len(header)} columns expected, the row has "
                                  f"{sum(v is not None for v in row.values())}"
                                  + (" or more" if None in row else ""))
            q = _row_to_question(row, where)
            if q["index"] in seen:
                raise DataFormatError(where, None, f"index {q['index']!r} appears twice")
            seen.add(q["index"])
            out.append(q)
    return out


def write_mmbench(path: str | Path, questions: Iterable[Mapping[str, Any]]) -> Path:
    """Write question dicts as an MMBench TSV (columns ``COLUMNS``, then any other keys)."""
    path = Path(path)
    rows, extra = [], []
    for i, q in enumerate(questions):
        q = check_question(q, f"questions[{i}]")
        if len(q["options"]) > len(OPTION_COLUMNS):
            raise ArgumentError(f"questions[{i}]: MMBench has at most 5 options (A-E), got "
                                f"{len(q['options'])}")
        row = {k: v for k, v in q.items() if k != "options"}
        row.update(zip(OPTION_COLUMNS, q["options"]))
        for key, value in row.items():
            if isinstance(value, str) and ("\t" in value or "\n" in value) and key == "image":
                raise ArgumentError(f"questions[{i}]: image must be base64 text")
            if key not in COLUMNS and key not in extra:
                extra.append(key)
        rows.append(row)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=[*COLUMNS, *extra], delimiter="\t",
                                lineterminator="\n", restval="")
        writer.writeheader()
        writer.writerows(rows)
    return path


def encode_image(image: Any) -> str:
    """An image -- (3, H, W) float tensor in [0, 1], (H, W, 3) array, or PIL image -- as
    base64 PNG bytes."""
    from PIL import Image

    if isinstance(image, torch.Tensor):
        if image.dim() != 3 or image.shape[0] != 3:
            raise ArgumentError(f"image tensor must be (3, H, W), got {tuple(image.shape)}")
        image = image.permute(1, 2, 0).numpy()
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3:
            raise ArgumentError(f"image array must be (H, W, 3), got {image.shape}")
        if image.dtype != np.uint8:
            image = np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)
        image = Image.fromarray(image, "RGB")
    if not isinstance(image, Image.Image):
        raise ArgumentTypeError(f"image must be a tensor, array or PIL image, got "
                                f"{type(image).__name__}")
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def decode_image(data: str, image_size: int | None = None) -> torch.Tensor:
    """A base64 image -> (3, S, S) float32 in [0, 1] (resized to ``image_size`` if given)."""
    from PIL import Image, UnidentifiedImageError

    if not isinstance(data, str):
        raise ArgumentTypeError(f"image must be base64 text, got {type(data).__name__}")
    try:
        img = Image.open(io.BytesIO(base64.b64decode(data, validate=True))).convert("RGB")
    except (binascii.Error, ValueError, UnidentifiedImageError) as exc:
        raise ArgumentError(f"image is not a base64 image file ({exc})") from None
    if image_size is not None and img.size != (image_size, image_size):
        img = img.resize((image_size, image_size), Image.BILINEAR)
    return torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)


# --- the shapes benchmark --------------------------------------------------------------------


def _options(right: str, pool: Sequence[str], rng: random.Random, n: int) -> tuple[list[str], str]:
    others = rng.sample([p for p in pool if p != right], n - 1)
    slot = rng.randrange(n)
    options = others[:slot] + [right] + others[slot:]
    return options, LETTERS[slot]


def shapes_questions(
    n: int, *, seed: int, image_size: int = 16, categories: Sequence[str] = tuple(CATEGORIES),
    n_options: int = 4, split: str = "all",
) -> list[dict[str, Any]]:
    """``n`` four-option questions about shapes images, categories taken in turn.

    Colour, shape and position questions show one object; count questions 1..4 objects
    (the small size, so four fit). Deterministic in ``seed``.
    """
    check_int("n", n, minimum=0)
    check_int("seed", seed, minimum=0)
    check_int("n_options", n_options, minimum=2)
    if n_options > 4:
        raise ArgumentError(f"n_options must be <= 4 (there are 4 counts), got {n_options}")
    for c in categories:
        if c not in CATEGORIES:
            raise ArgumentError(f"categories must be among {', '.join(CATEGORIES)}, got {c!r}")
    if not categories:
        raise ArgumentError("categories must name at least one category")
    rng = random.Random(seed * 1_000_003 + 17)
    out = []
    for i in range(n):
        cat = categories[i % len(categories)]
        objects = rng.randint(1, 4) if cat == "count" else 1
        image, attrs, _ = render_sample(i, seed=seed, image_size=image_size, objects=objects,
                                        split=split)
        o = attrs[0]
        if cat == "colour":
            text = f"What colour is the {o['shape']}?"
            options, answer = _options(o["color"], list(COLORS), rng, n_options)
        elif cat == "shape":
            text = f"What shape is the {o['color']} object?"
            options, answer = _options(o["shape"], list(SHAPES), rng, n_options)
        elif cat == "position":
            text = f"Where is the {o['color']} {o['shape']}?"
            options, answer = _options(o["position"], list(POSITIONS), rng, n_options)
        else:
            text = "How many objects are in the image?"
            options, answer = _options(str(objects), ["1", "2", "3", "4"], rng, n_options)
        out.append({"index": i, "question": text, "hint": "", "options": options,
                    "answer": answer, "category": cat, "l2-category": CATEGORIES[cat],
                    "image": encode_image(image)})
    return out


def write_shapes_benchmark(path: str | Path, n: int, *, seed: int, **kwargs: Any) -> Path:
    """``shapes_questions(n, seed=seed, **kwargs)`` written as an MMBench TSV at ``path``."""
    return write_mmbench(path, shapes_questions(n, seed=seed, **kwargs))


# --- answering with CLIP / SigLIP / BLIP -----------------------------------------------------

_COLOUR_Q = re.compile(r"^What colou?r is the (\w+)\?$")
_SHAPE_Q = re.compile(r"^What shape is the (\w+) object\?$")
_WHERE_Q = re.compile(r"^Where is the (\w+) (\w+)\?$")
_COUNT_Q = re.compile(r"^How many objects are in the image\?$")


def _captions(colors: Iterable[str], shapes: Iterable[str],
              positions: Iterable[str]) -> list[str]:
    return [f"a {s} {c} {sh} at the {p}" for s in SIZES for c in colors for sh in shapes
            for p in positions]


def option_prompts(question: str, option: str) -> list[str]:
    """Captions of the shapes grammar that say "``option`` answers ``question``", every
    attribute the question leaves open filled in every way; a question outside the
    benchmark's four patterns gives ``["question option"]``."""
    if m := _COLOUR_Q.match(question):
        return _captions([option], [m.group(1)], POSITIONS)
    if m := _SHAPE_Q.match(question):
        return _captions([m.group(1)], [option], POSITIONS)
    if m := _WHERE_Q.match(question):
        return _captions([m.group(1)], [m.group(2)], [option])
    if _COUNT_Q.match(question) and option.isdigit():
        k = int(option)
        places = list(POSITIONS)
        return [" and ".join(f"a small {c} {sh} at the {places[j]}" for j in range(k))
                for c in ("red", "blue") for sh in ("circle", "square")]
    return [f"{question} {option}"]


def _image_of(shown: Mapping[str, Any], image_size: int | None) -> torch.Tensor:
    if "image" not in shown:
        raise ArgumentError(f"question {shown.get('index')!r} has no image")
    image = shown["image"]
    if isinstance(image, torch.Tensor):
        return image
    return decode_image(image, image_size)


def _device(model: torch.nn.Module) -> torch.device:
    return next(iter(model.parameters())).device


def similarity_answerer(
    model: torch.nn.Module, tokenizer: Any, *, max_length: int = 12,
    image_size: int | None = None, prompts: Callable[[str, str], list[str]] = option_prompts,
) -> Callable[[dict[str, Any]], str]:
    """answer_fn for a two-tower model (``encode_image``, ``encode_text``): the letter of the
    option whose mean prompt embedding is closest (cosine) to the image's."""
    from paperlab.language.tokenizer import encode_batch

    for name in ("encode_image", "encode_text"):
        if not hasattr(model, name):
            raise ArgumentTypeError(f"model must have {name}, got {type(model).__name__}")
    cache: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def option_embedding(question: str, option: str) -> torch.Tensor:
        key = f"{question}\x00{option}"
        if key not in cache:
            ids, mask = encode_batch(tokenizer, prompts(question, option), max_length)
            dev = _device(model)
            emb = F.normalize(model.encode_text(ids.to(dev), mask.to(dev)), dim=-1)
            cache[key] = F.normalize(emb.mean(0), dim=-1)
        return cache[key]

    @torch.no_grad()
    def answer(shown: dict[str, Any]) -> str:
        was = model.training
        model.eval()
        image = _image_of(shown, image_size)[None].to(_device(model))
        img = F.normalize(model.encode_image(image), dim=-1)[0]
        txt = torch.stack([option_embedding(shown["question"], o) for o in shown["options"]])
        model.train(was)
        return LETTERS[int((txt @ img).argmax())]

    return answer


def itm_answerer(
    model: torch.nn.Module, tokenizer: Any, *, image_size: int | None = None,
    prompts: Callable[[str, str], list[str]] = option_prompts,
) -> Callable[[dict[str, Any]], str]:
    """answer_fn for BLIP: the letter of the option whose prompts have the highest mean
    image-text-matching margin (``multimodal.capfilt.itm_scores``)."""
    from paperlab.multimodal.capfilt import itm_scores

    @torch.no_grad()
    def answer(shown: dict[str, Any]) -> str:
        image = _image_of(shown, image_size).to(_device(model))
        per_option = [prompts(shown["question"], o) for o in shown["options"]]
        flat = [p for ps in per_option for p in ps]
        scores = itm_scores(model, image[None].expand(len(flat), -1, -1, -1), flat,
                            tokenizer=tokenizer)
        means, start = [], 0
        for ps in per_option:
            means.append(scores[start:start + len(ps)].mean())
            start += len(ps)
        return LETTERS[int(torch.stack(means).argmax())]

    return answer


def caption_answerer(
    model: torch.nn.Module, tokenizer: Any, *, image_size: int | None = None,
) -> Callable[[dict[str, Any]], str]:
    """answer_fn for BLIP's decoder: its greedy caption of the image, as free text (the same
    for every rotation; ``extract_choice`` finds the option it names)."""
    from paperlab.multimodal.capfilt import decode_captions, generate_captions

    cache: dict[Any, str] = {}

    @torch.no_grad()
    def answer(shown: dict[str, Any]) -> str:
        key = shown.get("index")
        if key is None or key not in cache:
            image = _image_of(shown, image_size).to(_device(model))
            ids = generate_captions(model, image[None], greedy=True)
            caption = decode_captions(tokenizer, ids)[0]
            if key is None:
                return caption
            cache[key] = caption
        return cache[key]

    return answer
