"""Training progress: the epoch bar (terminal only), the fold's ETA, progress.json for `segkit status`
(with its staleness rule) and progress.png markers."""

from __future__ import annotations

import io
import json
import os
import re
import socket
import subprocess
import sys
import time

import pytest
from training_helpers import make_work

import toolkit.training.trainer as trainer_mod
from toolkit.pipeline.state import JobState, format_status, status_rows
from toolkit.training.options import TrainerOptions
from toolkit.training.progress import format_duration, progress_figure
from toolkit.training.progress_bar import FoldClock, epoch_bar
from toolkit.training.progress_record import RECORD, STALE_S, ProgressRecord, fold_activity, read_record
from toolkit.training.setup import resolve_training
from toolkit.training.trainer import Trainer
from toolkit.workdir import WorkDir

OPTS = TrainerOptions(epochs=2, iters_per_epoch=2, val_iters=1, num_workers=0, device="cpu", save_every=10,
                      final_validation=False, seed=3)
EPOCH_LINE = re.compile(r"epoch (\d)/2  train_loss .*  time [\d.]+s  fold ETA (\d+s|\d+m\d\ds)")


def _epoch_lines(text: str) -> list[str]:
    """The epoch numbers of the per-epoch lines (a cleared bar leaves a carriage return before them)."""
    return [m.group(1) for line in re.split(r"[\r\n]+", text) if (m := EPOCH_LINE.fullmatch(line))]


class Terminal(io.StringIO):
    """What tqdm sees when stderr is a terminal."""

    def isatty(self) -> bool:
        return True


def _train(tmp_path, options=OPTS):
    root, work = make_work(tmp_path)
    Trainer(resolve_training(root, work, "3d_fullres", 0), options).run()
    return root, work


def test_bar_with_rate_and_fold_eta_on_a_terminal(tmp_path, monkeypatch):
    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    _train(tmp_path)
    out = term.getvalue()
    for epoch in (1, 2):  # the bar of each epoch, redrawn in place, with the rate and the fold's ETA
        assert re.search(rf"epoch {epoch}/2: +100%\|[^|]*\| 2/2 \[[^\]]*(it/s|s/it), validating, fold ETA \S+\]",
                         out), out
    assert "\r" in out
    assert _epoch_lines(out) == ["1", "2"]


def test_no_bar_off_a_terminal_but_epoch_lines_with_eta(tmp_path, capsys):
    _train(tmp_path)
    err = capsys.readouterr().err
    assert "\r" not in err and "it/s" not in err and "s/it" not in err and "%|" not in err
    assert _epoch_lines(err) == ["1", "2"], err
    log = (WorkDir.for_dataset(tmp_path / "work", tmp_path / "Dataset999_Synth").model("3d_fullres", 0)
           / "training_log.txt").read_text(encoding="utf-8")
    assert _epoch_lines(log) == ["1", "2"]


def test_bar_only_on_rank_zero_and_a_terminal(monkeypatch):
    monkeypatch.setattr(sys, "stderr", Terminal())
    assert not epoch_bar(0, 10, 5, main=True).disable
    assert epoch_bar(0, 10, 5, main=False).disable
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert epoch_bar(0, 10, 5, main=True).disable


def test_fold_eta_covers_every_remaining_epoch():
    now = [100.0]
    clock = FoldClock(iters_per_epoch=5, epochs=10, start_epoch=2, now=lambda: now[0])
    assert clock.eta(2, 0) is None
    now[0] += 20.0  # two iterations
    assert clock.eta(2, 2) == pytest.approx((8 * 5 - 2) * 10.0)
    now[0] += 30.0  # three more iterations plus validation: 50 s for the epoch
    assert clock.eta(3, 0) == pytest.approx(7 * 5 * 10.0)
    assert format_duration(3720) == "1h02m" and format_duration(65) == "1m05s" and format_duration(7) == "7s"
    assert format_duration(2 * 86400 + 3 * 3600) == "2d03h"


def test_status_shows_a_plain_train_run_as_training(tmp_path, monkeypatch):
    """Status polled from inside the run (after epoch 1): the fold is training, not waiting."""
    seen = []
    real_plot = trainer_mod.plot_progress

    def plot_and_poll(logs, path, *names):
        real_plot(logs, path)
        wd = WorkDir.for_dataset(tmp_path / "work", tmp_path / "Dataset999_Synth")
        seen.append({r["job"]: r for r in status_rows(wd)}["train/3d_fullres/0"])

    monkeypatch.setattr(trainer_mod, "plot_progress", plot_and_poll)
    _train(tmp_path, OPTS.with_changes(epochs=3))
    assert [(r["status"], r["epoch"]) for r in seen] == [("training", "1/3"), ("training", "2/3"),
                                                        ("training", "3/3")]
    assert "fold ETA" in seen[0]["note"] and f"pid {os.getpid()}" in seen[0]["note"]
    fold = WorkDir.for_dataset(tmp_path / "work", tmp_path / "Dataset999_Synth").model("3d_fullres", 0)
    record = read_record(fold)
    assert record["state"] == "done" and record["epoch"] == record["epochs"] == 3
    assert fold_activity(fold) is None  # a finished run: the files tell the rest


@pytest.fixture
def wd(tmp_path):
    w = WorkDir.for_dataset(tmp_path / "work", tmp_path / "Dataset001_X")
    w.root.mkdir(parents=True)
    return w


def _record(wd, config="3d_fullres", fold=0, **fields):
    fold_dir = wd.model(config, fold)
    fold_dir.mkdir(parents=True, exist_ok=True)
    data = {"state": "training", "epoch": 7, "epochs": 1000, "pid": os.getpid(),
            "host": socket.gethostname(), "started": time.time() - 100, "updated": time.time(),
            "eta_at": time.time() + 3720, "error": None, **fields}
    (fold_dir / RECORD).write_text(json.dumps(data), encoding="utf-8")
    return fold_dir


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_status_staleness_rule(wd):
    _record(wd, fold=0)  # alive: this process, fresh
    _record(wd, fold=1, pid=_dead_pid())  # killed (same host, pid gone)
    _record(wd, fold=2, updated=time.time() - 2 * STALE_S)  # same host, pid alive but silent too long
    _record(wd, fold=3, host="elsewhere", pid=1)  # another host, fresh: cannot check the pid
    _record(wd, fold=4, host="elsewhere", updated=time.time() - 2 * STALE_S)  # another host, stale
    _record(wd, fold=5, state="interrupted")  # Ctrl-C: the trainer said so itself
    rows = {r["job"]: r for r in status_rows(wd)}
    got = {k.rsplit("/", 1)[1]: (r["status"], r["epoch"]) for k, r in rows.items()}
    assert got == {"0": ("training", "7/1000"), "1": ("interrupted", "7/1000"), "2": ("interrupted", "7/1000"),
                   "3": ("training", "7/1000"), "4": ("interrupted", "7/1000"), "5": ("interrupted", "7/1000")}
    assert rows["train/3d_fullres/0"]["note"].startswith("fold ETA 1h0")
    assert "no checkpoint yet" in rows["train/3d_fullres/1"]["note"]
    text = format_status(list(rows.values()), None)
    assert re.search(r"train/3d_fullres/0\s+training\s+-\s+7/1000\s+0\s+\(fold ETA 1h0\dm, pid", text), text
    assert text.splitlines()[-1] == "0 waiting, 0 running, 0 failed, 0 finished, 2 training, 4 interrupted"


def test_status_record_against_jobs_file_and_finished_folds(wd):
    _record(wd, "2d", 0, state="interrupted")
    (wd.model("2d", 0) / "checkpoint_latest.pt").write_bytes(b"x")
    done = _record(wd, "2d", 1)  # finished folds are finished whatever the record says
    (done / "validation").mkdir()
    (done / "checkpoint_final.pt").write_bytes(b"x")
    (done / "validation" / "summary.json").write_text("{}")
    _record(wd, "2d", 2, state="done")
    (wd.model("2d", 2) / "checkpoint_latest.pt").write_bytes(b"x")
    _record(wd, "2d", 3, pid=_dead_pid())
    _record(wd, "2d", 4)
    _record(wd, "2d", 5, state="failed", error="RuntimeError: out of memory")
    state = JobState(wd)
    state.set("train/2d/3", "running", job_id="9", attempts=1)  # the executor knows better than a dead record
    state.set("train/2d/4", "waiting", attempts=1, error="x")  # a live trainer beats "waiting"
    rows = {r["job"]: r for r in status_rows(wd)}
    assert rows["train/2d/0"]["status"] == "interrupted" and "--resume" in rows["train/2d/0"]["note"]
    assert rows["train/2d/1"]["status"] == "finished"
    assert rows["train/2d/2"]["status"] == "waiting"  # the run ended normally (no validation yet)
    assert rows["train/2d/3"]["status"] == "running"
    assert rows["train/2d/4"]["status"] == "training" and rows["train/2d/4"]["error"] is None
    assert rows["train/2d/5"]["status"] == "failed" and "out of memory" in rows["train/2d/5"]["note"]


def test_record_states_and_heartbeat(tmp_path):
    rec = ProgressRecord(tmp_path, 0, 5, heartbeat_s=0.05)
    with rec.running():
        first = read_record(tmp_path)["updated"]
        deadline = time.time() + 10
        while read_record(tmp_path)["updated"] == first and time.time() < deadline:
            time.sleep(0.05)
        assert read_record(tmp_path)["updated"] > first  # the heartbeat, without any epoch ending
        assert read_record(tmp_path)["state"] == "training"
    assert read_record(tmp_path)["state"] == "done"
    with pytest.raises(KeyboardInterrupt), ProgressRecord(tmp_path, 3, 5).running():
        raise KeyboardInterrupt
    assert read_record(tmp_path)["state"] == "interrupted" and read_record(tmp_path)["epoch"] == 3
    with pytest.raises(RuntimeError), ProgressRecord(tmp_path, 3, 5).running():
        raise RuntimeError("boom\nmore")
    assert read_record(tmp_path)["state"] == "failed" and read_record(tmp_path)["error"] == "RuntimeError: boom"
    ProgressRecord(tmp_path / "other", 0, 5, enabled=False).update(write=True)  # another rank: no file
    assert not (tmp_path / "other" / RECORD).exists()


def test_progress_plot_after_one_epoch_shows_every_curve():
    logs = {"train_loss": [0.9], "val_loss": [0.8], "pseudo_dice": [[0.1, 0.2]], "mean_fg_dice": [0.15],
            "ema_fg_dice": [0.15], "lr": [0.01], "epoch_time": [12.0]}
    fig = progress_figure(logs)
    try:
        assert len(fig.axes) == 4  # losses, its pseudo-Dice twin, learning rate, epoch time
        for ax in fig.axes:
            assert ax.lines, ax
            for line in ax.lines:  # a single point is only visible as a marker
                assert len(line.get_xdata()) == 1
                assert line.get_marker() not in (None, "None", "", " ") and line.get_markersize() > 0
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)
