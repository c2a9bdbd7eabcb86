"""The MMBench TSV format, the shapes benchmark and the CLIP/SigLIP/BLIP answerers."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from paperlab.data.synthetic.shapes import COLORS
from paperlab.evaluation.circular import circular_eval
from paperlab.evaluation.mmbench import (
    CATEGORIES,
    DataFormatError,
    caption_answerer,
    decode_image,
    encode_image,
    itm_answerer,
    option_prompts,
    read_mmbench,
    shapes_questions,
    similarity_answerer,
    write_mmbench,
    write_shapes_benchmark,
)

pytestmark = pytest.mark.note("H2")

HEADER = "index\tquestion\thint\tA\tB\tC\tD\tanswer\tcategory\timage\tsource\tl2-category\tsplit"


def test_read_a_hand_written_mmbench_file(tmp_path):
    img = encode_image(np.zeros((4, 4, 3), dtype=np.uint8))
    path = tmp_path / "dev.tsv"
    path.write_text(
        HEADER + "\n"
        f"7\tWhat is shown?\tA hint.\tcat\tdog\t\t\tB\timage_emotion\t{img}\tsrc\tcoarse\tdev\n"
        f'8\t"Two\tlines?"\t\tyes\tno\tmaybe\tdunno\tD\tocr\t{img}\tsrc\tfine\tdev\n'
    )
    qs = read_mmbench(path)
    assert [q["index"] for q in qs] == [7, 8]
    assert qs[0]["options"] == ["cat", "dog"] and qs[0]["answer"] == "B"
    assert qs[0]["hint"] == "A hint." and qs[0]["l2-category"] == "coarse"
    assert qs[0]["source"] == "src" and "hint" not in qs[1]
    assert qs[1]["question"] == "Two\tlines?" and len(qs[1]["options"]) == 4
    assert decode_image(qs[0]["image"]).shape == (3, 4, 4)


def test_round_trip(tmp_path):
    qs = shapes_questions(12, seed=3)
    path = write_mmbench(tmp_path / "b.tsv", qs)
    back = read_mmbench(path)
    assert back == [{k: v for k, v in q.items() if v != ""} for q in qs]
    with path.open(newline="") as f:
        header = next(csv.reader(f, delimiter="\t"))
    assert header[:4] == ["index", "question", "hint", "A"] and "image" in header


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("1\tq\t\tx\ty\t\t\tC\tc\t\t\t\t", "answer"),
        ("1\tq\t\tx\t\tz\t\tA\tc\t\t\t\t", "option C"),
        ("1\tq\t\tx\ty\t\t\tA\tc\tnot*base64\t\t\t", "base64"),
        ("1\tq\t\tx\ty", "columns"),
    ],
)
def test_bad_rows_name_the_file_and_line(tmp_path, row, message):
    path = tmp_path / "bad.tsv"
    path.write_text(HEADER + "\n0\tq\t\tx\ty\t\t\tA\tc\t\t\t\t\n" + row + "\n")
    with pytest.raises(DataFormatError, match=message) as info:
        read_mmbench(path)
    assert "bad.tsv, line 3" in str(info.value)


def test_missing_columns_and_files(tmp_path):
    path = tmp_path / "h.tsv"
    path.write_text("index\tquestion\n")
    with pytest.raises(DataFormatError, match="answer"):
        read_mmbench(path)
    with pytest.raises(DataFormatError, match="no such file"):
        read_mmbench(tmp_path / "none.tsv")


def test_shapes_questions_are_right_and_unbiased(tmp_path):
    qs = shapes_questions(400, seed=0)
    assert {q["category"] for q in qs} == set(CATEGORIES)
    assert all(len(q["options"]) == 4 and len(set(q["options"])) == 4 for q in qs)
    counts = np.bincount(["ABCD".index(q["answer"]) for q in qs], minlength=4)
    assert counts.min() > 70  # the right letter is drawn uniformly (100 each expected)
    q = next(q for q in qs if q["category"] == "colour")
    image = decode_image(q["image"])
    right = q["options"]["ABCD".index(q["answer"])]
    pixels = image.reshape(3, -1).T[image.reshape(3, -1).T.sum(1) > 0.3]
    assert np.allclose(pixels.mean(0).numpy(), COLORS[right], atol=0.02)
    assert shapes_questions(8, seed=0) == qs[:8]
    assert len(read_mmbench(write_shapes_benchmark(tmp_path / "s.tsv", 5, seed=1))) == 5


def test_option_prompts_follow_the_caption_grammar():
    assert "a small red circle at the top left" in option_prompts("What colour is the circle?",
                                                                  "red")
    assert set(option_prompts("Where is the red circle?", "center")) == {
        "a small red circle at the center", "a large red circle at the center"}
    assert option_prompts("Is it nice?", "yes") == ["Is it nice? yes"]


class ColourOracle(torch.nn.Module):
    """A two-tower 'model' that embeds texts by their words and images by their colour word:
    cosine is highest for the prompts naming the image's colour."""

    def __init__(self, tokenizer):
        super().__init__()
        self.vocab = tokenizer.get_vocab()
        self.w = torch.nn.Parameter(torch.zeros(()))

    def encode_text(self, ids, mask):
        out = torch.zeros(ids.shape[0], len(self.vocab))
        return out.scatter_add_(1, ids, mask.float()) * 0.1 + self._colour_rows(ids)

    def _colour_rows(self, ids):
        out = torch.zeros(ids.shape[0], len(self.vocab))
        for c in COLORS:
            out[:, self.vocab[c]] = (ids == self.vocab[c]).any(1).float() * 10
        return out

    def encode_image(self, images):
        out = torch.zeros(images.shape[0], len(self.vocab))
        for b, img in enumerate(images):
            px = img.reshape(3, -1).T
            mean = px[px.sum(1) > 0.3].mean(0)
            name = min(COLORS, key=lambda c: float(((mean - torch.tensor(COLORS[c])) ** 2).sum()))
            out[b, self.vocab[name]] = 1.0
        return out


def test_similarity_answerer_picks_the_closest_option():
    from paperlab.recipes.clip import caption_tokenizer

    tok = caption_tokenizer()
    qs = shapes_questions(24, seed=2, categories=("colour",))
    r = circular_eval(qs, similarity_answerer(ColourOracle(tok), tok))
    assert r["vanilla"] == r["circular"] == 1.0 and r["unmatched"] == 0


def test_our_models_answer_with_letters_or_text():
    from paperlab.recipes.blip import blip_tokenizer, small_blip
    from paperlab.recipes.clip import caption_tokenizer, small_model

    torch.manual_seed(0)
    qs = shapes_questions(4, seed=0)
    tok = caption_tokenizer()
    clip = small_model("clip", tok)
    siglip = small_model("siglip", tok)
    for m in (clip, siglip):
        r = circular_eval(qs, similarity_answerer(m, tok))
        assert r["unmatched"] == 0 and r["calls"] == 16
    btok = blip_tokenizer()
    blip = small_blip(btok)
    r = circular_eval(qs, itm_answerer(blip, btok))
    assert r["unmatched"] == 0
    texts = []
    answer = caption_answerer(blip, btok)
    r = circular_eval(qs, lambda s: texts.append(answer(s)) or texts[-1])
    assert all(isinstance(t, str) for t in texts) and r["calls"] == 16
