"""The notes catalogue: every note in paperlab's scope, its family and its implementation.

paperlab turns a notebook of deep-learning notes into software, and each note is judged by
four kinds of evidence: an implementation, a parity test against an independent reference, a
benchmark against the fastest alternative and an experiment that reproduces the note's claim
(``paperlab evidence`` shows all four). This module is the list of notes (the scope table of
``shared/NOTES.md``: id, title, family) and, for each, the library modules that implement it.
Experiments and benchmarks name their note in the registry (``note="C3 ..."``), parity tests
with a pytest marker (``@pytest.mark.note("C3")``), so nothing else needs listing here.

A module path listed here that does not exist yet is shown as missing by the evidence table:
the catalogue names where a technique lives, the file system says whether it has landed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from paperlab.errors import ArgumentError

PACKAGE = Path(__file__).resolve().parent
NOTE_ID = re.compile(r"\b([A-J][1-9])\b")


@dataclass(frozen=True)
class Note:
    """One note: ``id`` such as ``"B1"``, its title, family, and implementing modules (paths
    relative to the repository root, ``paperlab/...``)."""

    id: str
    title: str
    family: str
    modules: tuple[str, ...]

    def existing_modules(self) -> list[str]:
        """The listed modules that exist in this installation."""
        return [m for m in self.modules if (PACKAGE.parent / m).is_file()]


def _n(id_: str, title: str, family: str, *modules: str) -> Note:
    return Note(id_, title, family, tuple(f"paperlab/{m}.py" for m in modules))


NOTES: tuple[Note, ...] = (
    _n("A1", "Position-encoding survey", "position", "position/sinusoidal", "position/learned",
       "position/recursive", "position/multiplicative", "position/relative", "position/t5",
       "position/alibi"),
    _n("A2", "RoPE (RoFormer)", "position", "position/rope"),
    _n("B1", "Remove softmax (linear attention)", "attention", "attention/softmax",
       "attention/linear"),
    _n("B2", "Efficient-transformer survey", "attention", "attention/sparse"),
    _n("B3", "Performer (FAVOR+)", "attention", "attention/performer"),
    _n("B4", "TransNormer", "attention", "attention/transnormer"),
    _n("B5", "GAU / FLASH", "attention", "attention/gau"),
    _n("C1", "RNN", "sequence", "sequence/recurrent", "sequence/recurrent_cells",
       "sequence/bptt"),
    _n("C2", "Transformer replaces RNN (LSTM, GRU)", "sequence", "sequence/transformer",
       "sequence/transformer_layers", "sequence/lm", "sequence/decoding"),
    _n("C3", "SSM: HiPPO -> S4 -> Mamba", "sequence", "sequence/hippo", "sequence/s4",
       "sequence/selective_scan", "sequence/mamba"),
    _n("D1", "Word2Vec", "language", "language/word2vec", "language/keyed_vectors",
       "algorithms/huffman"),
    _n("D2", "BERT", "language", "language/bert", "language/mlm", "language/tokenizer"),
    _n("D3", "ViT", "vision", "vision/vit", "vision/patches"),
    _n("D4", "MAE", "vision", "vision/mae"),
    _n("D5", "CLIP", "multimodal", "multimodal/clip", "multimodal/losses",
       "multimodal/zero_shot"),
    _n("D6", "SigLIP", "multimodal", "multimodal/siglip", "multimodal/losses"),
    _n("D7", "BLIP", "multimodal", "multimodal/blip", "multimodal/capfilt"),
    _n("D8", "Self-supervised learning overview", "vision", "vision/mae"),
    _n("E1", "Face-recognition system", "face", "face/mtcnn", "face/detect", "face/align",
       "face/backbone", "face/verification"),
    _n("E2", "Softmax for many classes (DeepFace, DeepID)", "face", "face/margin",
       "face/partial_fc"),
    _n("E3", "Margin softmax losses", "face", "face/margin"),
    _n("F1", "Faster R-CNN", "detection", "detection/boxes", "detection/roi",
       "detection/faster_rcnn"),
    _n("F2", "Deformable Conv v1/v2", "detection", "detection/deform_conv"),
    _n("F3", "DETR", "detection", "detection/detr"),
    _n("F4", "mAP", "detection", "detection/map", "detection/coco"),
    _n("G1", "Stable Diffusion (latent diffusion)", "generative", "generative/autoencoder",
       "generative/unet", "generative/schedules", "generative/samplers",
       "generative/latent_diffusion"),
    _n("G2", "Autoregressive models (binarised MNIST)", "generative",
       "generative/autoregressive"),
    _n("H1", "OadTR", "video", "video/oadtr", "video/streams", "evaluation/frame_map"),
    _n("H2", "MMBench / CircularEval", "evaluation", "evaluation/circular",
       "evaluation/mmbench"),
    _n("I1", "AdamW vs Adam", "training", "training/adamw"),
    _n("I2", "Gradient checkpointing", "training", "training/checkpointing"),
    _n("I3", "DDP", "training", "training/distributed", "training/trainer"),
    _n("J1", "@tf_export (the registry)", "algorithms", "registry"),
    _n("J2", "Sliding window maximum", "algorithms", "algorithms/sliding_window"),
    _n("J3", "Maximum gap", "algorithms", "algorithms/max_gap"),
    _n("J4", "Combination sum I/II", "algorithms", "algorithms/combination_sum"),
    _n("J5", "0/1 knapsack", "algorithms", "algorithms/knapsack"),
    _n("J6", "heapq", "algorithms", "algorithms/heap"),
)

_BY_ID = {n.id: n for n in NOTES}


def note_ids(text: str | None) -> list[str]:
    """The note ids named in a registry ``note=`` text: ``"C1 RNN; C2 LSTM"`` -> [C1, C2]."""
    return list(dict.fromkeys(NOTE_ID.findall(text or "")))


def get_note(note_id: str) -> Note:
    """The note with this id (``"B1"``); ``ArgumentError`` naming the known ids otherwise."""
    try:
        return _BY_ID[note_id]
    except KeyError:
        raise ArgumentError(
            f"unknown note {note_id!r}; the catalogue has {', '.join(_BY_ID)}") from None
