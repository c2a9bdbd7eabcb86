"""Error types raised at paperlab's public boundaries.

Every error names the argument at fault, what was expected and what was given, so a user sees
the fix in the message. They subclass the built-in ``ValueError``/``TypeError``/``LookupError``
so code that already catches those keeps working.
"""

from __future__ import annotations

import importlib
from types import ModuleType


class PaperlabError(Exception):
    """Base class of every error paperlab raises on purpose."""


class ShapeError(PaperlabError, ValueError):
    """A tensor or sequence has the wrong shape or length."""


class ConfigError(PaperlabError, ValueError):
    """A configuration value is missing, unknown or out of range."""


class ArgumentError(PaperlabError, ValueError):
    """An argument has a value outside its allowed range."""


class ArgumentTypeError(PaperlabError, TypeError):
    """An argument has the wrong type."""


class UnknownNameError(PaperlabError, LookupError):
    """A registry lookup found no component of that kind and name."""

    def __str__(self) -> str:  # LookupError quotes its message; show it plainly
        return str(self.args[0]) if self.args else ""


class OutputError(PaperlabError, OSError):
    """An output folder cannot be created or written."""


class MissingExtraError(PaperlabError, ImportError):
    """An optional feature needs a package from one of paperlab's extras."""


def require(module: str, *, extra: str, purpose: str) -> ModuleType:
    """Import ``module`` for an optional feature, or raise one line naming the extra.

    ``require("transformers", extra="hf", purpose="benchmark 'bert'")`` returns the module,
    or raises ``MissingExtraError``: "benchmark 'bert' needs transformers, which is not
    installed: pip install 'paperlab[hf]'". Everything the main job uses is a core
    dependency; only optional features (benchmarks against HF models, OpenCV's cascades)
    go through here.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(
            f"{purpose} needs {module.split('.')[0]}, which is not installed or does not "
            f"import ({exc}): pip install 'paperlab[{extra}]'"
        ) from None


def check_int(name: str, value: object, *, minimum: int | None = None) -> int:
    """Return ``value`` if it is an ``int`` (not a ``bool``) at least ``minimum``, else raise."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ArgumentTypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if minimum is not None and value < minimum:
        raise ArgumentError(f"{name} must be >= {minimum}, got {value}")
    return value


def check_int_list(name: str, values: object) -> list[int]:
    """Return ``values`` as a list if it is a sequence of ints (no bools), else raise naming it."""
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise ArgumentTypeError(f"{name} must be a sequence of ints, got {type(values).__name__}")
    out = list(values)  # type: ignore[call-overload]
    for i, v in enumerate(out):
        if isinstance(v, bool) or not isinstance(v, int):
            raise ArgumentTypeError(f"{name}[{i}] must be an int, got {type(v).__name__} {v!r}")
    return out
