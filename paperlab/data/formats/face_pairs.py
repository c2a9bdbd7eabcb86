"""LFW's ``pairs.txt``: the face-verification pairs, read with errors that name file and line.

The format (Huang et al. 2007, "Labeled Faces in the Wild", README section "pairs.txt")::

    10	300                      <- header: folds, then pairs of each kind per fold
    Abel_Pacheco	1	4          <- same person: name, image number, image number
    Abdel_Madi_Shabneh	1	Dean_Barker	1   <- different: name, number, name, number

Each fold is ``n`` same pairs followed by ``n`` different pairs. The development files
(``pairsDevTrain.txt``) carry a one-number header ``n`` (one fold); a file without a header
is read as one fold of whatever it holds. Image ``k`` of ``Name`` is
``Name/Name_%04d.jpg`` under the image root. Fields are separated by tabs or spaces.

``read_lfw_pairs(path, root=None)`` returns ``FacePair(path1, path2, same, fold, line)``;
with ``root`` the paths are joined to it, and ``check_files=True`` also checks that every
image exists, naming the line that points to a missing one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from paperlab.data.formats.common import DataFormatError, MissingFileError


@dataclass(frozen=True)
class FacePair:
    """One verification pair: the two image paths, same identity or not, its fold, and the
    line of ``pairs.txt`` it came from."""

    path1: Path
    path2: Path
    same: bool
    fold: int
    line: int


def lfw_image_path(name: str, number: int, suffix: str = ".jpg") -> Path:
    """``Name/Name_0001.jpg``: where LFW keeps image ``number`` of ``name``."""
    return Path(name) / f"{name}_{number:04d}{suffix}"


def _number(path: Path, line: int, field: str) -> int:
    try:
        value = int(field)
    except ValueError:
        raise DataFormatError(path, line, f"image number must be an integer, got {field!r}"
                              ) from None
    if value < 1:
        raise DataFormatError(path, line, f"image number must be >= 1, got {value}")
    return value


def read_lfw_pairs(path: str | Path, root: str | Path | None = None, *, suffix: str = ".jpg",
                   check_files: bool = False) -> list[FacePair]:
    """Read an LFW ``pairs.txt``; see the module docstring for the format."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(path, None, "pairs file not found")
    base = Path(root) if root is not None else None
    if check_files and (base is None or not base.is_dir()):
        raise MissingFileError(base or path, None,
                               "check_files needs root, the folder of the LFW images")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise DataFormatError(path, None, f"not UTF-8 text ({exc})") from None
    rows = [(i + 1, ln.split()) for i, ln in enumerate(lines) if ln.strip()]
    if not rows:
        raise DataFormatError(path, None, "the file holds no pairs")
    folds, per_kind = 1, None
    first_line, first = rows[0]
    if all(f.isdigit() for f in first) and len(first) in (1, 2):
        if len(first) == 2:
            folds, per_kind = int(first[0]), int(first[1])
        else:
            per_kind = int(first[0])
        if folds < 1 or per_kind < 1:
            raise DataFormatError(path, first_line, f"header numbers must be >= 1, got "
                                  f"{' '.join(first)}")
        rows = rows[1:]
        if len(rows) != folds * 2 * per_kind:
            raise DataFormatError(path, first_line, f"the header announces {folds} fold(s) of "
                                  f"{per_kind} same + {per_kind} different pairs "
                                  f"({folds * 2 * per_kind} lines), the file has {len(rows)}")
    out = []
    for k, (line, fields) in enumerate(rows):
        if len(fields) == 3:
            name, a, b = fields
            p1, p2, same = lfw_image_path(name, _number(path, line, a), suffix), \
                lfw_image_path(name, _number(path, line, b), suffix), True
        elif len(fields) == 4:
            n1, a, n2, b = fields
            p1, p2, same = lfw_image_path(n1, _number(path, line, a), suffix), \
                lfw_image_path(n2, _number(path, line, b), suffix), False
        else:
            raise DataFormatError(path, line, f"expected 3 fields (name n1 n2) or 4 (name1 n1 "
                                  f"name2 n2), got {len(fields)}: {' '.join(fields)!r}")
        fold = 0
        if per_kind is not None:
            fold, pos = divmod(k, 2 * per_kind)
            if same != (pos < per_kind):
                want = "same" if pos < per_kind else "different"
                raise DataFormatError(path, line, f"fold {fold + 1} should hold a {want}-"
                                      f"identity pair here (each fold is {per_kind} same, then "
                                      f"{per_kind} different pairs)")
        if base is not None:
            p1, p2 = base / p1, base / p2
            if check_files:
                for p in (p1, p2):
                    if not p.is_file():
                        raise DataFormatError(path, line, f"image file not found: {p}")
        out.append(FacePair(p1, p2, same, fold, line))
    return out
