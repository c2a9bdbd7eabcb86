"""Small files for the format readers' tests, written into each test's tmp_path.

(A plain module, not a ``conftest.py``: a second conftest would shadow the
``from conftest import require`` that other tests use.)
"""

from __future__ import annotations

from pathlib import Path


def write_png(path: Path, color: tuple[int, int, int], size: tuple[int, int] = (8, 6)) -> Path:
    """A solid-colour RGB PNG of ``size`` (width, height)."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


def write_corrupt(path: Path) -> Path:
    """A file named like an image whose bytes are not one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    return path
