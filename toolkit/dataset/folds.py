"""Fold names: an index of the splits (``0``, ``1``, ...) or ``"all"`` (every training case, nnU-Net's fold all).

One parser for every place a fold is read (CLI options, job keys, folder names), so ``all`` is accepted
everywhere a fold index is. Fold ``all`` trains on every preprocessed training case; as in nnU-Net v2
(``nnUNetTrainer.do_split``) its per-epoch pseudo-Dice is computed on the same training cases, and it
has no held-out cases: segkit predicts no validation cases for it and model selection ignores it.
"""

from __future__ import annotations

from collections.abc import Iterable

from toolkit.errors import SegkitError

ALL = "all"
Fold = int | str  # a non-negative int, or ALL

NO_VALIDATION = "fold all has no held-out cases: no validation predictions, not usable for model selection"
TRAINING_PSEUDO_DICE = ("fold all: the per-epoch validation loss and pseudo-Dice are computed on training cases "
                        "(as nnU-Net does), so they are optimistic")


def parse_fold(value: object) -> Fold:
    """``"all"`` (any case) or a non-negative integer (as int or digit string); else a one-line error."""
    if isinstance(value, bool):
        raise SegkitError(f"fold must be a non-negative integer or 'all' (got {value!r})")
    if isinstance(value, int) and value >= 0:
        return value
    text = str(value).strip()
    if text.lower() == ALL:
        return ALL
    if text.isdigit():
        return int(text)
    raise SegkitError(f"fold must be a non-negative integer or 'all' (got {value!r})")


def parse_folds(values: Iterable[object]) -> list[Fold]:
    """Each value parsed, duplicates dropped, order kept."""
    out: list[Fold] = []
    for v in values:
        fold = parse_fold(v)
        if fold not in out:
            out.append(fold)
    return out


def is_all(fold: object) -> bool:
    return fold == ALL


def numbered(folds: Iterable[Fold]) -> list[int]:
    """The cross-validation folds among ``folds`` (fold all left out)."""
    return [f for f in folds if not is_all(f)]  # type: ignore[misc]


def fold_of_folder(name: str) -> Fold | None:
    """The fold of a ``fold_<k>`` / ``fold_all`` folder name, else None."""
    if not name.startswith("fold_"):
        return None
    try:
        return parse_fold(name[5:])
    except SegkitError:
        return None
