"""Feature streams: synthetic ones deterministic by seed; .npy features + THUMOS-style labels."""

from __future__ import annotations

import numpy as np
import pytest

from paperlab.video.streams import (
    DataFormatError,
    frame_labels,
    load_features,
    make_stream,
    make_streams,
    read_annotations,
    read_video,
    stream_patterns,
)

pytestmark = pytest.mark.note("H1")


def test_deterministic_by_seed_and_prefix():
    a = make_streams(3, 200, seed=5)
    b = make_streams(5, 200, seed=5)
    for s, t in zip(a, b):
        assert np.array_equal(s.features, t.features) and np.array_equal(s.labels, t.labels)
    c = make_streams(1, 200, seed=6)[0]
    assert not np.array_equal(a[0].labels, c.labels)
    assert a[0].features.dtype == np.float32 and a[0].labels.dtype == np.int64


def test_actions_start_loud_and_stay_faint():
    k, f = 4, 16
    body, start = stream_patterns(k, f)
    s = make_stream(4000, seed=0, num_classes=k, feature_dim=f, noise=0.0, body_scale=0.3,
                    start_frames=3)
    y, x = s.labels, s.features
    assert set(np.unique(y)) <= set(range(k + 1)) and (y > 0).mean() > 0.3
    starts = np.flatnonzero((y[1:] > 0) & (y[:-1] == 0)) + 1
    for t in starts[:20]:
        c = y[t] - 1
        assert np.allclose(x[t], start[c] + 0.3 * body[c], atol=1e-5)
        run = np.flatnonzero(y[t:] != y[t])
        end = t + (run[0] if run.size else len(y) - t)
        if end - t > 3:
            assert np.allclose(x[t + 3], 0.3 * body[c], atol=1e-5)
    assert np.allclose(x[y == 0], 0.0)  # no noise, no distractors: background is empty


def test_distractors_and_ambiguous():
    s = make_stream(3000, seed=1, noise=0.0, distractors=0.5, ambiguous=0.3)
    bg = s.labels == 0
    assert 0.3 < (np.abs(s.features[bg]).sum(1) > 0).mean() < 0.7
    assert (s.labels == 5).any()  # 4 classes: ambiguous is 5
    with pytest.raises(Exception, match="ambiguous"):
        make_stream(10, seed=0, ambiguous=2.0)


def test_real_format_round_trip(tmp_path):
    x = np.random.default_rng(0).normal(size=(40, 8)).astype(np.float32)
    np.save(tmp_path / "video_1.npy", x)
    ann = tmp_path / "video_1.txt"
    ann.write_text("# class start end (seconds)\nJump 1.0 2.5\nAmbiguous 3.0 3.5\nRun 7 10\n")
    v = read_video(tmp_path / "video_1.npy", ann, fps=4, class_names=["Jump", "Run"])
    assert v.name == "video_1" and np.array_equal(v.features, x)
    expected = np.zeros(40, dtype=np.int64)
    expected[4:10] = 1  # frames at 1.0 .. 2.25 s
    expected[12:14] = 3  # ambiguous
    expected[28:40] = 2
    assert np.array_equal(v.labels, expected)
    assert read_annotations(ann) == [("Jump", 1.0, 2.5), ("Ambiguous", 3.0, 3.5),
                                     ("Run", 7.0, 10.0)]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Jump 1 2\nJump 1\n", "line 2: expected"),
        ("Jump 1 2\n\nJump a b\n", "line 3: START and END must be numbers"),
        ("Jump 3 2\n", "line 1: need 0 <= START < END"),
        ("Swim 1 2\n", "line 1: unknown class 'Swim'"),
    ],
)
def test_annotation_errors_name_file_and_line(tmp_path, text, message):
    path = tmp_path / "a.txt"
    path.write_text(text)
    with pytest.raises(DataFormatError, match=message) as info:
        read_annotations(path, ["Jump"])
    assert "a.txt" in str(info.value)


def test_feature_errors(tmp_path):
    np.save(tmp_path / "v.npy", np.zeros((5, 2)))
    (tmp_path / "v.txt").write_text("Jump 0 9\n")
    with pytest.raises(DataFormatError, match="v.txt, segment 1: ends at 9"):
        read_video(tmp_path / "v.npy", tmp_path / "v.txt", fps=1, class_names=["Jump"])
    np.save(tmp_path / "bad.npy", np.zeros(5))
    with pytest.raises(DataFormatError, match=r"bad.npy: features must be a \(T, F\)"):
        load_features(tmp_path / "bad.npy")
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    with pytest.raises(DataFormatError, match="junk.npy"):
        load_features(tmp_path / "junk.npy")
    with pytest.raises(DataFormatError, match="unknown class"):
        frame_labels([("Swim", 0, 1)], 4, 1.0, ["Jump"])
