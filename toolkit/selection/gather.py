"""Finding each configuration's cross-validation predictions and gathering them into ``cv/<config>/``.

A fold counts as present when ``models/<config>/fold_<k>/validation/summary.json`` exists: the
trainer's validation writes it last, so a fold whose validation was interrupted is not taken for
finished. Missing folds are reported, never fatal: selection works with what exists.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from toolkit.evaluation.evaluate import list_label_files
from toolkit.workdir import WorkDir

# Simplest first: a tie in score goes to the earlier entry (docs/method.md 1.4, "the simpler model").
CONFIG_ORDER = ("2d", "3d_fullres", "3d_lowres", "3d_cascade_fullres")


def config_rank(name: str) -> tuple[int, str]:
    """Sort key of a configuration by simplicity; unknown names come last, alphabetically."""
    return (CONFIG_ORDER.index(name), "") if name in CONFIG_ORDER else (len(CONFIG_ORDER), name)


@dataclass
class ConfigCV:
    """One configuration's validation outputs over its present folds."""

    name: str
    folds_present: list[int] = field(default_factory=list)
    folds_missing: list[int] = field(default_factory=list)
    predictions: dict[str, Path] = field(default_factory=dict)    # case -> label file
    probabilities: dict[str, Path] = field(default_factory=dict)  # case -> <case>.npz
    fold_of_case: dict[str, int] = field(default_factory=dict)

    def folds_json(self) -> dict:
        return {"present": self.folds_present, "missing": self.folds_missing,
                "num_cases": len(self.predictions),
                "cases_without_probabilities": sorted(set(self.predictions) - set(self.probabilities))}


def planned_configs(work: WorkDir) -> list[str]:
    """Configurations named in plans.json (empty if there is no plans file)."""
    if not work.plans.is_file():
        return []
    plans = json.loads(work.plans.read_text(encoding="utf-8"))
    return sorted(plans.get("configurations", {}), key=config_rank)


def discover(work: WorkDir, file_ending: str, num_folds: int) -> list[ConfigCV]:
    """Every planned or trained configuration with its present/missing folds and validation files."""
    models = work.root / "models"
    trained = [p.name for p in models.iterdir() if p.is_dir()] if models.is_dir() else []
    found = []
    for name in sorted(set(trained) | set(planned_configs(work)), key=config_rank):
        cv = ConfigCV(name)
        for fold in range(num_folds):
            val = work.model(name, fold) / "validation"
            if not (val / "summary.json").is_file():
                cv.folds_missing.append(fold)
                continue
            cv.folds_present.append(fold)
            for case, path in list_label_files(val, file_ending).items():
                if case in cv.predictions:
                    continue  # a case validated by two folds means broken splits; keep the first
                cv.predictions[case] = path
                cv.fold_of_case[case] = fold
                npz = val / f"{case}.npz"
                if npz.is_file():
                    cv.probabilities[case] = npz
        found.append(cv)
    return found


def link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link ``src`` to ``dst`` (copy across file systems), replacing ``dst`` atomically."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.parent / f".{dst.name}.tmp-{os.getpid()}"
    if tmp.exists():
        tmp.unlink()
    try:
        os.link(src, tmp)
    except OSError:  # content only: the copy's mode follows the umask, like every output
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def gather_cv(cv: ConfigCV, folder: Path, file_ending: str) -> dict[str, Path]:
    """Mirror the configuration's validation predictions into ``folder``; returns case -> file there.

    Stale files (cases no longer predicted) are removed so the folder equals the current CV set.
    """
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for case, src in sorted(cv.predictions.items()):
        dst = folder / f"{case}{file_ending}"
        if not (dst.exists() and os.path.samefile(src, dst)):
            link_or_copy(src, dst)
        out[case] = dst
    for case, stale in list_label_files(folder, file_ending).items():
        if case not in out:
            stale.unlink()
    return out


def stamp(paths: list[Path]) -> str:
    """A digest of the files' names, sizes and modification times: a summary is reused only while
    the files it was computed from are unchanged."""
    h = hashlib.sha1()
    for p in sorted(paths):
        st = p.stat()
        h.update(f"{p}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()
