"""Config dataclasses: models are built from configs, and configs round-trip through JSON.

Subclass ``Config`` with a ``@dataclass``; ``to_dict``/``from_dict``/``to_json``/``from_json``
come for free, and ``replace_from_strings`` applies command-line ``key=value`` overrides
(``--set lr=3e-4``) with the field's own type, naming the key when it is unknown or the value
does not parse.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path
from typing import Any, TypeVar

from paperlab.errors import ConfigError

C = TypeVar("C", bound="Config")


@dataclasses.dataclass
class Config:
    """Base class of every paperlab config."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any]) -> C:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"{cls.__name__} has no field {', '.join(map(repr, unknown))} "
                f"(fields: {', '.join(sorted(known))})"
            )
        hints = typing.get_type_hints(cls)
        kwargs = {}
        for key, value in data.items():
            hint = hints.get(key)
            if isinstance(hint, type) and issubclass(hint, Config) and isinstance(value, dict):
                value = hint.from_dict(value)
            elif isinstance(value, list) and typing.get_origin(hint) is tuple:
                value = tuple(value)
            kwargs[key] = value
        return cls(**kwargs)

    def to_json(self, path: str | Path | None = None) -> str:
        text = json.dumps(self.to_dict(), indent=2, sort_keys=True)
        if path is not None:
            Path(path).write_text(text + "\n")
        return text

    @classmethod
    def from_json(cls: type[C], text_or_path: str | Path) -> C:
        path = Path(text_or_path)
        text = path.read_text() if path.suffix == ".json" and path.exists() else str(text_or_path)
        return cls.from_dict(json.loads(text))

    def replace_from_strings(self: C, overrides: list[str]) -> C:
        """Return a copy with ``key=value`` strings applied, each parsed as its field's type."""
        hints = typing.get_type_hints(type(self))
        changes: dict[str, Any] = {}
        for item in overrides:
            key, sep, raw = item.partition("=")
            key = key.strip()
            if not sep:
                raise ConfigError(f"--set expects key=value, got {item!r}")
            if key not in hints:
                raise ConfigError(
                    f"unknown key {key!r} for {type(self).__name__} "
                    f"(keys: {', '.join(sorted(hints))})"
                )
            changes[key] = parse_value(key, raw, hints[key])
        return dataclasses.replace(self, **changes)


def parse_value(key: str, raw: str, hint: Any) -> Any:
    """Parse the string ``raw`` as type ``hint`` (bool, int, float, str, Optional, tuple)."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if raw.lower() in ("none", "null") and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return parse_value(key, raw, inner[0])
    try:
        if hint is bool:
            low = raw.lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if hint in (int, float, str):
            return hint(raw)
        if origin is tuple:
            parts = [p for p in raw.strip("()[]").split(",") if p.strip()]
            elem = args[0] if args else str
            return tuple(parse_value(key, p.strip(), elem) for p in parts)
    except ValueError:
        name = getattr(hint, "__name__", str(hint))
        raise ConfigError(f"{key} expects a value of type {name}, got {raw!r}") from None
    return raw
