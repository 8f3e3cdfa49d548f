"""What each job of a ``segkit run`` is doing: a small JSON file in the work directory, plus the files.

``<WORK>/<dataset>/jobs.json`` maps a job key (``prepare``, ``train/<config>/<fold>``, ``select``) to
``{"status": waiting|running|failed|finished, "job_id", "attempts", "error", "updated"}``. Only the
process that runs or submits the jobs writes it (atomically). ``segkit status`` reads it together with
the model folders: a fold with ``checkpoint_final.pt`` and its validation summary is finished whatever
the file says; otherwise a live trainer's ``progress.json`` (training/progress_record.py, written also
by a plain ``segkit train``) makes the fold ``training`` or ``validating``, and a dead or stopped
trainer's record makes a fold no job knows ``interrupted`` (or ``failed``). The epoch reached comes from
that record, else from ``training_log.txt`` (no torch import).
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from toolkit.dataset.folds import fold_of_folder, parse_fold
from toolkit.errors import SegkitError
from toolkit.io.atomic import atomic_write_json, read_json
from toolkit.training.progress_record import LIVE_STATES, fold_activity
from toolkit.workdir import WorkDir

STATUSES = ("waiting", "running", "failed", "finished")
FOLD_STATUSES = ("training", "validating", "interrupted")  # from a fold's progress.json
STATE_FILE = "jobs.json"


def train_key(config: str, fold: int | str) -> str:
    return f"train/{config}/{fold}"


def parse_train_key(key: str) -> tuple[str, int | str] | None:
    """(config, fold) of ``train/<config>/<fold>`` (fold an index or "all"), else None."""
    parts = key.split("/")
    if len(parts) != 3 or parts[0] != "train":
        return None
    try:
        return parts[1], parse_fold(parts[2])
    except SegkitError:
        return None


class JobState:
    """The state file of one work directory (read on creation, written on every change)."""

    def __init__(self, wd: WorkDir) -> None:
        self.path = wd.root / STATE_FILE
        data = read_json(self.path) if self.path.is_file() else {}
        self.executor: str | None = data.get("executor")
        self.jobs: dict[str, dict[str, Any]] = data.get("jobs", {})

    def get(self, key: str) -> dict[str, Any]:
        return self.jobs.get(key, {"status": "waiting", "attempts": 0})

    def set(self, key: str, status: str, **fields: Any) -> None:
        if status not in STATUSES:
            raise ValueError(f"unknown job status {status!r}")
        entry = {**self.get(key), **fields, "status": status, "updated": time.time()}
        if status == "finished":
            entry.pop("error", None)
        self.jobs[key] = entry
        self.save()

    def save(self) -> None:
        atomic_write_json(self.path, {"executor": self.executor, "jobs": self.jobs})


def fold_finished(fold_dir: Path) -> bool:
    """Final checkpoint and validation summary; fold all has no validation, its checkpoint suffices."""
    done = (Path(fold_dir) / "checkpoint_final.pt").is_file()
    if Path(fold_dir).name == "fold_all":
        return done
    return done and (Path(fold_dir) / "validation" / "summary.json").is_file()


def last_epoch(fold_dir: Path) -> str | None:
    """``"k/n"`` of the last logged epoch, from training_log.txt."""
    log = fold_dir / "training_log.txt"
    if not log.is_file():
        return None
    found = re.findall(r"^epoch (\d+)/(\d+)", log.read_text(errors="replace"), flags=re.M)
    return f"{found[-1][0]}/{found[-1][1]}" if found else None


def status_rows(wd: WorkDir) -> list[dict[str, Any]]:
    """One row per job the state file knows and per trained or training fold on disk."""
    state = JobState(wd)
    keys = list(state.jobs)
    models = wd.root / "models"
    if models.is_dir():
        for fold_dir in sorted(models.glob("*/fold_*")):
            fold = fold_of_folder(fold_dir.name)
            key = train_key(fold_dir.parent.name, fold) if fold is not None else None
            if key is not None and key not in keys:
                keys.append(key)
    return [_row(wd, key, state.jobs.get(key)) for key in keys]


def _row(wd: WorkDir, key: str, entry: dict[str, Any] | None) -> dict[str, Any]:
    """One job's row: the state file, overruled by the files (finished) and a trainer's progress record."""
    status, parsed = (entry["status"] if entry else "waiting"), parse_train_key(key)
    epoch, note = None, None
    if parsed:
        fold_dir = wd.model(*parsed)
        epoch, activity = last_epoch(fold_dir), fold_activity(fold_dir)
        if fold_finished(fold_dir):
            status = "finished"
        elif activity and (activity["status"] in LIVE_STATES or entry is None):
            status, epoch, note = activity["status"], activity["epoch"], activity["note"]
        elif entry is None and (fold_dir / "checkpoint_latest.pt").is_file():
            status = "waiting"  # interrupted: the next run resumes it
    if key == "select" and wd.selection.is_file():
        status = "finished"
    error = (entry or {}).get("error") if status in STATUSES else None
    return {"job": key, "status": status, "job_id": (entry or {}).get("job_id"), "epoch": epoch,
            "attempts": (entry or {}).get("attempts", 0), "error": error, "note": note}


def format_status(rows: list[dict[str, Any]], executor: str | None) -> str:
    if not rows:
        return "no jobs yet (run `segkit run` first)"
    width = max(len(r["job"]) for r in rows)
    lines = [f"executor: {executor or 'local'}",
             f"{'job'.ljust(width)}  {'status':<11} {'job id':<10} {'epoch':<10} attempts"]
    for r in rows:
        extra = "; ".join(x for x in (r.get("note"), r["error"]) if x)
        lines.append(f"{r['job'].ljust(width)}  {r['status']:<11} {str(r['job_id'] or '-'):<10} "
                     f"{r['epoch'] or '-':<10} {r['attempts']}" + (f"  ({extra})" if extra else ""))
    counts = {s: sum(r["status"] == s for r in rows) for s in STATUSES + FOLD_STATUSES}
    lines.append(", ".join(f"{n} {s}" for s, n in counts.items() if n or s in STATUSES))
    return "\n".join(lines)
