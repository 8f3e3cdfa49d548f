"""``progress.json`` in a fold folder: what a running trainer records so ``segkit status`` can see it.

Only ``segkit run`` records its jobs in jobs.json; a fold trained by a plain ``segkit train`` would show
as waiting. The trainer (rank 0) therefore writes, atomically, ``{"state", "epoch", "epochs", "pid",
"host", "started", "updated", "eta_at", "error"}``: at the start, after every epoch, and from a
heartbeat thread every :data:`HEARTBEAT_S` seconds (so ``updated`` stays fresh through long epochs and
the final validation). ``state`` is ``training``, ``validating`` (final validation), then ``done``;
``interrupted`` (Ctrl-C / SIGTERM: the last completed epoch is saved) or ``failed`` when the run ends
otherwise. ``epoch`` counts completed epochs; ``eta_at`` is the expected end of training (epoch time).

Staleness rule (:func:`fold_activity`): a record that says training or validating is believed only if
its process is alive — same host: the pid still exists; any host: ``updated`` is at most
:data:`STALE_S` seconds old (ten missed heartbeats, which also absorbs modest clock skew between hosts).
Otherwise the process was killed without a word (SIGKILL, out of memory, node lost) and the fold is
reported as ``interrupted`` at its last recorded epoch. No torch import: ``segkit status`` reads it.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from toolkit.io.atomic import atomic_write_json
from toolkit.training.progress import format_duration

RECORD = "progress.json"
HEARTBEAT_S = 30.0
STALE_S = 10 * HEARTBEAT_S
LIVE_STATES = ("training", "validating")


class ProgressRecord:
    """The writer (rank 0 only; a disabled record does nothing)."""

    def __init__(self, fold_dir: Path, epoch: int, epochs: int, enabled: bool = True,
                 heartbeat_s: float = HEARTBEAT_S) -> None:
        self.path, self.enabled, self.heartbeat_s = Path(fold_dir) / RECORD, enabled, heartbeat_s
        self.data: dict[str, Any] = {"state": "training", "epoch": epoch, "epochs": epochs, "pid": os.getpid(),
                                     "host": socket.gethostname(), "started": time.time(), "updated": None,
                                     "eta_at": None, "error": None}
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def update(self, write: bool = False, **fields: Any) -> None:
        """Change fields in memory (the heartbeat writes them), or write now with ``write``."""
        with self._lock:
            self.data.update(fields)
            if write:
                self._write()

    def _write(self) -> None:
        if not self.enabled:
            return
        self.data["updated"] = time.time()
        atomic_write_json(self.path, self.data)

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            with self._lock, contextlib.suppress(OSError):  # best effort: a full disk must not kill training
                self._write()

    @contextlib.contextmanager
    def running(self) -> Iterator[ProgressRecord]:
        """Record for the duration of the block; its way out (normal, interrupt, error) is the final state."""
        self.update(write=True)
        beat = threading.Thread(target=self._beat, name="progress-heartbeat", daemon=True)
        if self.enabled:
            beat.start()
        try:
            yield self
        except KeyboardInterrupt:
            self._finish("interrupted")
            raise
        except BaseException as exc:
            self._finish("failed", error=f"{type(exc).__name__}: {exc}".splitlines()[0][:200])
            raise
        else:
            self._finish("done", eta_at=None)
        finally:
            if beat.is_alive():
                self._stop.set()
                beat.join()

    def _finish(self, state: str, **fields: Any) -> None:
        self._stop.set()
        self.update(write=True, state=state, **fields)


def read_record(fold_dir: Path) -> dict[str, Any] | None:
    """The fold's record, or None when absent or unreadable (status must never fail on it)."""
    try:
        data = json.loads((Path(fold_dir) / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _pid_alive(pid: int) -> bool:
    if os.name != "posix":  # no cheap check: the age rule alone decides
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, belongs to someone else
        return True
    return True


def record_alive(record: dict[str, Any], now: float | None = None, host: str | None = None) -> bool:
    """The staleness rule of the module docstring."""
    now = time.time() if now is None else now
    updated = record.get("updated")
    if not isinstance(updated, (int, float)) or now - updated > STALE_S:
        return False
    if record.get("host") == (host or socket.gethostname()):
        return isinstance(record.get("pid"), int) and _pid_alive(record["pid"])
    return True


def fold_activity(fold_dir: Path, now: float | None = None) -> dict[str, Any] | None:
    """``{"status", "epoch": "k/n", "note"}`` from the record, or None when it has nothing to say
    (no record, or the run ended normally: the fold's files tell the rest)."""
    record = read_record(fold_dir)
    if record is None or record.get("state") == "done":
        return None
    now = time.time() if now is None else now
    state = str(record.get("state"))
    epoch = f"{record.get('epoch')}/{record.get('epochs')}"
    if state in LIVE_STATES and not record_alive(record, now):
        state = "interrupted"
    if state in LIVE_STATES:
        where = f"pid {record.get('pid')} on {record.get('host')}"
        eta_at = record.get("eta_at")
        known = isinstance(eta_at, (int, float)) and state == "training"
        eta = f"fold ETA {format_duration(eta_at - now)}, " if known else ""
        return {"status": state, "epoch": epoch, "note": eta + where}
    if state == "failed":
        return {"status": "failed", "epoch": epoch, "note": record.get("error") or "the trainer failed"}
    resumable = (Path(fold_dir) / "checkpoint_latest.pt").is_file()
    how = "`segkit train --resume` continues from checkpoint_latest.pt" if resumable else "no checkpoint yet"
    return {"status": "interrupted", "epoch": epoch, "note": f"interrupted at epoch {record.get('epoch')}; {how}"}
