"""Feature streams for online action detection (note H1): synthetic ones, and the real formats.

The task
--------
An online detector sees a video as a stream of per-frame features x_1, x_2, ... (in
THUMOS'14 work: two-stream I3D/TSN features at 4 fps) and must say, at each frame t and
from x_1..x_t only, which action is happening: background (class 0), one of K actions, or a
frame annotated "ambiguous" (class K + 1: not scored, ignored by the loss).

Synthetic streams (``make_streams``)
------------------------------------
A small world where the answer is known: actions of K classes with random durations,
separated by random stretches of background. Per class c there is a fixed *body* pattern
``body[c]`` (F,) and a *start* pattern ``start[c]``; an action of class c lasting d frames
has features

    x_t = start[c] * onset + body[c] * body_scale + noise,     onset = 1 on its first
                                                               ``start_frames`` frames, else 0

so the class is loud at the start and faint afterwards (``body_scale`` < 1): recognising the
middle of an action needs the memory of how it started, which a window of past frames (or a
recurrent state) gives. Background frames are noise; with ``distractors`` > 0 a background
frame carries, with that probability, a random class's body pattern (clutter that looks like
an action for one frame). With ``ambiguous`` > 0 an action instance is, with that
probability, labelled "ambiguous" (its features stay those of its class). Noise is
N(0, ``noise``^2). The patterns come from ``pattern_seed`` (fixed by default, so training
and held-out streams share one world); the streams from ``seed``.

Real formats
------------
- features: one ``.npy`` per video, (T, F) float (``load_features``);
- annotations: THUMOS-style segments, one per line, ``CLASS START END`` with times in
  seconds (``read_annotations``; ``#`` starts a comment). ``frame_labels`` turns segments into
  per-frame labels at ``fps``: frame t (time t / fps) gets the class of the segment with
  start <= t / fps < end; a class named ``Ambiguous`` (any case) gets the ambiguous id.
  ``read_video`` does both and checks they agree. Errors name the file and the line.

Shapes: features (T, F) float32, labels (T,) int64 in 0..K+1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from paperlab.data.formats.common import DataFormatError
from paperlab.errors import ArgumentError, check_int


@dataclass(frozen=True)
class Stream:
    """One video: features (T, F) float32 and per-frame labels (T,) int64."""

    features: np.ndarray
    labels: np.ndarray
    name: str = ""

    def __len__(self) -> int:
        return int(self.labels.shape[0])


# --- synthetic -------------------------------------------------------------------------------


def stream_patterns(num_classes: int, feature_dim: int, *,
                    pattern_seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(body, start) patterns, each (K, F) with unit-norm rows scaled to sqrt(F)."""
    check_int("num_classes", num_classes, minimum=1)
    check_int("feature_dim", feature_dim, minimum=2)
    rng = np.random.default_rng([pattern_seed, 7919])
    pats = rng.standard_normal((2, num_classes, feature_dim))
    pats /= np.linalg.norm(pats, axis=-1, keepdims=True)
    pats *= np.sqrt(feature_dim)
    return pats[0].astype(np.float32), pats[1].astype(np.float32)


def make_stream(
    length: int, *, seed: int, num_classes: int = 4, feature_dim: int = 16,
    duration: tuple[int, int] = (8, 24), gap: tuple[int, int] = (4, 16), start_frames: int = 3,
    body_scale: float = 0.3, noise: float = 1.0, distractors: float = 0.0,
    ambiguous: float = 0.0, pattern_seed: int = 0, index: int = 0,
) -> Stream:
    """One synthetic stream of ``length`` frames (see the module docstring)."""
    check_int("length", length, minimum=1)
    check_int("start_frames", start_frames, minimum=0)
    for name, (lo, hi) in (("duration", duration), ("gap", gap)):
        if not (isinstance(lo, int) and isinstance(hi, int) and 1 <= lo <= hi):
            raise ArgumentError(f"{name} must be (lo, hi) ints with 1 <= lo <= hi, got "
                                f"{(lo, hi)!r}")
    for name, p in (("distractors", distractors), ("ambiguous", ambiguous)):
        if not 0.0 <= p <= 1.0:
            raise ArgumentError(f"{name} must be a probability in [0, 1], got {p}")
    if noise < 0 or body_scale < 0:
        raise ArgumentError(f"noise and body_scale must be >= 0, got {noise}, {body_scale}")
    body, start = stream_patterns(num_classes, feature_dim, pattern_seed=pattern_seed)
    rng = np.random.default_rng([seed, index, 104729])
    x = noise * rng.standard_normal((length, feature_dim)).astype(np.float32)
    y = np.zeros(length, dtype=np.int64)
    amb = num_classes + 1
    t = int(rng.integers(gap[0], gap[1] + 1))
    while t < length:
        c = int(rng.integers(num_classes))
        d = int(rng.integers(duration[0], duration[1] + 1))
        end = min(t + d, length)
        x[t:end] += body_scale * body[c]
        x[t:min(t + start_frames, end)] += start[c]
        y[t:end] = amb if rng.random() < ambiguous else c + 1
        t = end + int(rng.integers(gap[0], gap[1] + 1))
    if distractors > 0:
        bg = np.flatnonzero(y == 0)
        hit = bg[rng.random(bg.size) < distractors]
        x[hit] += body[rng.integers(num_classes, size=hit.size)]
    return Stream(x, y, f"synthetic-{seed}-{index}")


def make_streams(n: int, length: int, *, seed: int, **kwargs: Any) -> list[Stream]:
    """``n`` streams, stream i from (``seed``, i): ``make_streams(5, ...)`` starts
    ``make_streams(10, ...)``."""
    check_int("n", n, minimum=0)
    return [make_stream(length, seed=seed, index=i, **kwargs) for i in range(n)]


# --- real formats ----------------------------------------------------------------------------


def load_features(path: str | Path) -> np.ndarray:
    """A video's features from a ``.npy`` file: (T, F) float32."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, None, "no such file")
    try:
        x = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise DataFormatError(path, None, f"not a .npy array ({exc})") from None
    if x.ndim != 2 or not np.issubdtype(x.dtype, np.number):
        raise DataFormatError(path, None, f"features must be a (T, F) numeric array, got shape "
                          f"{x.shape} dtype {x.dtype}")
    if not np.isfinite(x).all():
        raise DataFormatError(path, None, "features hold NaN or inf")
    return x.astype(np.float32)


def read_annotations(path: str | Path, class_names: Sequence[str] | None = None
                     ) -> list[tuple[str, float, float]]:
    """Segments ``(class, start_s, end_s)`` from a THUMOS-style annotation file; with
    ``class_names``, a class outside them (and ``Ambiguous``) is an error naming the line."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, None, "no such file")
    out = []
    for n, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 3:
            raise DataFormatError(path, n, f"expected 'CLASS START END', got {raw!r}")
        try:
            start, end = float(parts[1]), float(parts[2])
        except ValueError:
            raise DataFormatError(path, n, f"START and END must be numbers (seconds), "
                              f"got {parts[1]!r} {parts[2]!r}") from None
        if not (0 <= start < end) or not np.isfinite(end):
            raise DataFormatError(path, n, f"need 0 <= START < END, got {start} {end}")
        if class_names is not None and parts[0] not in class_names and (
                parts[0].lower() != "ambiguous"):
            raise DataFormatError(path, n, f"unknown class {parts[0]!r} (known: "
                              f"{', '.join(class_names)}, Ambiguous)")
        out.append((parts[0], start, end))
    return out


def frame_labels(
    segments: Sequence[tuple[str, float, float]], num_frames: int, fps: float,
    class_names: Sequence[str], *, where: str = "segments",
) -> np.ndarray:
    """Per-frame labels (T,) int64: 0 background, 1..K ``class_names``, K + 1 ambiguous."""
    check_int("num_frames", num_frames, minimum=0)
    if not fps > 0:
        raise ArgumentError(f"fps must be > 0, got {fps}")
    ids = {name: i + 1 for i, name in enumerate(class_names)}
    amb = len(class_names) + 1
    y = np.zeros(num_frames, dtype=np.int64)
    times = np.arange(num_frames) / fps
    for k, (name, start, end) in enumerate(segments):
        if name.lower() == "ambiguous":
            c = amb
        elif name in ids:
            c = ids[name]
        else:
            raise DataFormatError(
                f"{where}, segment {k + 1}", None,
                f"unknown class {name!r} (known: {', '.join(class_names)}, Ambiguous)")
        y[(times >= start) & (times < end)] = c
    return y


def read_video(features: str | Path, annotations: str | Path, *, fps: float,
               class_names: Sequence[str]) -> Stream:
    """A real video: ``load_features`` and ``read_annotations`` -> ``frame_labels``; a
    segment that ends after the last frame (beyond one frame's slack) is an error."""
    x = load_features(features)
    segs = read_annotations(annotations, class_names)
    last = x.shape[0] / fps
    for k, (_, _, end) in enumerate(segs):
        if end > last + 1.0 / fps:
            raise DataFormatError(
                f"{annotations}, segment {k + 1}", None,
                f"ends at {end} s, after the last of {x.shape[0]} frames "
                f"({last:.2f} s at {fps} fps)")
    y = frame_labels(segs, x.shape[0], fps, class_names, where=str(annotations))
    return Stream(x, y, Path(features).stem)
