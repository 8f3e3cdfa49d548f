"""The one work-directory layout (docs/interfaces.md "Work directory"): every path the engine writes is named here."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def default_work_root() -> Path:
    """``$SEGKIT_WORK`` if set, else ``./segkit_work``; the only environment variable segkit reads."""
    return Path(os.environ.get("SEGKIT_WORK", "segkit_work"))


@dataclass(frozen=True)
class WorkDir:
    """Paths of one dataset's work folder: ``<WORK>/<dataset folder name>/``."""

    root: Path

    @classmethod
    def for_dataset(cls, work: str | Path | None, dataset: str | Path) -> WorkDir:
        base = Path(work) if work is not None else default_work_root()
        return cls(base / Path(dataset).resolve().name)

    @property
    def dataset_json(self) -> Path:
        return self.root / "dataset.json"

    @property
    def fingerprint(self) -> Path:
        return self.root / "fingerprint.json"

    @property
    def plans(self) -> Path:
        return self.root / "plans.json"

    @property
    def splits(self) -> Path:
        return self.root / "splits_final.json"

    def preprocessed(self, data_identifier: str) -> Path:
        """Preprocessed arrays of a plan's ``data_identifier`` (the cascade shares 3d_fullres' folder)."""
        return self.root / "preprocessed" / data_identifier

    def model(self, config: str, fold: int | str) -> Path:
        return self.root / "models" / config / f"fold_{fold}"

    def cv(self, config: str) -> Path:
        return self.root / "cv" / config

    def ensemble(self, a: str, b: str) -> Path:
        return self.root / "ensembles" / f"{a}+{b}"

    @property
    def selection(self) -> Path:
        return self.root / "selection.json"

    @property
    def report(self) -> Path:
        return self.root / "report"
