"""Config dataclasses: JSON round trip and --set overrides with clear errors."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from paperlab.config import Config
from paperlab.errors import ConfigError


@dataclass
class Inner(Config):
    width: int = 4


@dataclass
class Demo(Config):
    lr: float = 1e-3
    steps: int = 10
    name: str = "x"
    amp: bool = False
    dims: tuple[int, ...] = (1, 2)
    warmup: int | None = None
    inner: Inner = None  # type: ignore[assignment]

    def __post_init__(self):
        if self.inner is None:
            self.inner = Inner()


def test_json_round_trip(tmp_path):
    c = Demo(lr=0.5, dims=(3, 4), inner=Inner(7))
    path = tmp_path / "c.json"
    c.to_json(path)
    assert Demo.from_json(path) == c
    assert Demo.from_json(c.to_json()) == c


def test_overrides_parse_each_type():
    c = Demo().replace_from_strings(
        ["lr=3e-4", "steps=7", "name=abc", "amp=true", "dims=5,6", "warmup=none"]
    )
    assert (c.lr, c.steps, c.name, c.amp, c.dims, c.warmup) == (3e-4, 7, "abc", True, (5, 6), None)
    assert Demo().replace_from_strings(["warmup=3"]).warmup == 3


@pytest.mark.parametrize(
    "item, message",
    [
        ("nope=1", "unknown key 'nope'"),
        ("steps=1.5", "steps expects a value of type int"),
        ("amp=maybe", "amp expects a value of type bool"),
        ("lr", "expects key=value"),
    ],
)
def test_bad_overrides_name_the_key(item, message):
    with pytest.raises(ConfigError, match=message):
        Demo().replace_from_strings([item])


def test_unknown_field_in_dict():
    with pytest.raises(ConfigError, match="no field 'bogus'"):
        Demo.from_dict({"bogus": 1})
