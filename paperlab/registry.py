"""The export registry: paperlab's version of TensorFlow's ``@tf_export`` (note J1).

The idea
--------
TensorFlow does not keep a hand-written list of its public names. Each public function or
class carries a decorator, ``@tf_export("math.add")``, that records it under that name in a
table and hands the object back unchanged. The table *is* the public API: tools walk it to
generate docs and the ``tf.*`` namespace. The decorator itself is one general function; the
per-namespace variants (``keras_export``, ``estimator_export``) are the same function with its
first argument fixed by ``functools.partial``.

paperlab does the same for its components. ``export(kind, name, **meta)`` registers an
object under ``kind/name`` (say ``attention/linear`` or ``experiment/knapsack``) and returns
it untouched, so decorated code reads and behaves exactly as undecorated code. The
per-kind shorthands below are ``partial(export, kind)``. ``create(kind, name, **kwargs)``
builds a registered component, which lets configs choose the pluggable pieces of a model
(its attention, its position encoding, its margin head) by name; ``paperlab list`` prints
the table.

A registration happens when the defining module is imported. ``load_all()`` imports every
paperlab module once so that the table is complete.

Example::

    @export_attention("linear", paper="Katharopoulos et al. 2020")
    class LinearAttention(nn.Module): ...

    attn = create("attention", "linear", dim=64)
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

from paperlab.errors import ArgumentError, UnknownNameError

T = TypeVar("T")

KINDS: tuple[str, ...] = (
    "algorithm",
    "attention",
    "benchmark",
    "dataset",
    "experiment",
    "loss",
    "metric",
    "model",
    "optimizer",
    "position",
    "recipe",
)


@dataclass(frozen=True)
class Entry:
    """One registered component: where it came from and what was said about it."""

    kind: str
    name: str
    obj: Any
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def module(self) -> str:
        return getattr(self.obj, "__module__", "?")

    @property
    def summary(self) -> str:
        """First line of the object's docstring."""
        doc = (getattr(self.obj, "__doc__", None) or "").strip()
        return doc.splitlines()[0] if doc else ""


_TABLE: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}


def export(kind: str, name: str, **meta: Any) -> Callable[[T], T]:
    """Register the decorated object as ``kind/name`` and return it unchanged.

    ``meta`` is free-form (paper, note, tags, ...) and is shown by ``paperlab list``.
    Registering a second, different object under a taken name is an error; re-importing the
    same definition (same module and qualified name) replaces the old entry quietly.
    """
    if kind not in _TABLE:
        raise ArgumentError(f"kind must be one of {', '.join(KINDS)}; got {kind!r}")
    if not name or name != name.strip() or " " in name:
        raise ArgumentError(f"name must be a non-empty word without spaces; got {name!r}")

    def register(obj: T) -> T:
        old = _TABLE[kind].get(name)
        if old is not None and _identity(old.obj) != _identity(obj):
            raise ArgumentError(
                f"{kind}/{name} is already registered by {_identity(old.obj)}; "
                f"cannot register {_identity(obj)} under the same name"
            )
        _TABLE[kind][name] = Entry(kind, name, obj, dict(meta))
        return obj

    return register


def _identity(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


export_algorithm = partial(export, "algorithm")
export_attention = partial(export, "attention")
export_benchmark = partial(export, "benchmark")
export_dataset = partial(export, "dataset")
export_experiment = partial(export, "experiment")
export_loss = partial(export, "loss")
export_metric = partial(export, "metric")
export_model = partial(export, "model")
export_optimizer = partial(export, "optimizer")
export_position = partial(export, "position")
export_recipe = partial(export, "recipe")


def get(kind: str, name: str) -> Entry:
    """Return the entry ``kind/name``; an unknown name raises with the closest matches."""
    if kind not in _TABLE:
        raise UnknownNameError(f"unknown kind {kind!r}; kinds are: {', '.join(KINDS)}")
    load_all()
    table = _TABLE[kind]
    if name not in table:
        close = difflib.get_close_matches(name, table, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        known = ", ".join(sorted(table)) or "none yet"
        raise UnknownNameError(f"no {kind} named {name!r}{hint} (known: {known})")
    return table[name]


def create(kind: str, name: str, /, **kwargs: Any) -> Any:
    """Build the component ``kind/name`` by calling it with ``kwargs``."""
    return get(kind, name).obj(**kwargs)


def entries(kind: str | None = None) -> list[Entry]:
    """Every registered entry (of one kind, or all), sorted by kind then name."""
    load_all()
    if kind is not None and kind not in _TABLE:
        raise UnknownNameError(f"unknown kind {kind!r}; kinds are: {', '.join(KINDS)}")
    kinds = [kind] if kind else list(KINDS)
    return [_TABLE[k][n] for k in kinds for n in sorted(_TABLE[k])]


def names(kind: str) -> list[str]:
    """Sorted names registered under ``kind``."""
    return [e.name for e in entries(kind)]


_SKIP = {"paperlab.cli", "paperlab.__main__"}
_loaded = False


def _walk() -> Iterator[str]:
    import paperlab

    for info in pkgutil.walk_packages(paperlab.__path__, prefix="paperlab."):
        if info.name not in _SKIP and not info.name.rsplit(".", 1)[-1].startswith("_"):
            yield info.name


def load_all() -> None:
    """Import every paperlab module once so that every ``export`` has run."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in _walk():
        importlib.import_module(module)
