"""`segkit run --executor slurm` against a real single-node SLURM cluster (slurmctld + slurmd + munged).

The cluster is installed (apt, when missing), configured and started by tests/slurm_cluster.py and
stopped by PID at the end. One training job is cancelled with scancel while it is queued or
running: the run must resubmit it and still finish with a selection. Skips only when SLURM cannot
be installed (not root, or no apt-get). About two minutes on 2 CPUs.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from phantom_helpers import tiny_phantom_two_folds
from slurm_cluster import ClusterUnavailable, SlurmCluster

pytestmark = pytest.mark.slow  # starts a real single-node SLURM cluster and trains through it: minutes

TINY = ["--epochs", "1", "--iters-per-epoch", "2", "--val-iters", "1", "--num-workers", "0", "--device", "cpu",
        "-j", "1"]


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    try:
        cluster.start()
    except ClusterUnavailable as exc:
        cluster.stop()
        pytest.skip(f"single-node SLURM unavailable: {exc}")
    except BaseException:
        cluster.stop()
        raise
    yield cluster
    cluster.stop()




def _segkit(*args: str, env: dict) -> list[str]:
    return [sys.executable, "-m", "toolkit.cli", *args]


def _cancel_first_training(state_file: Path, env: dict, run: subprocess.Popen, timeout: float = 240) -> str:
    """scancel train/3d_fullres/0 as soon as it has a job id; returns that id."""
    end = time.time() + timeout
    while time.time() < end and run.poll() is None:
        if state_file.is_file():
            try:
                entry = json.loads(state_file.read_text())["jobs"].get("train/3d_fullres/0", {})
            except (json.JSONDecodeError, KeyError):
                entry = {}
            if entry.get("status") == "running" and entry.get("job_id"):
                subprocess.run(["scancel", str(entry["job_id"])], env=env, check=True)
                return str(entry["job_id"])
        time.sleep(0.2)
    raise AssertionError(f"train/3d_fullres/0 was never submitted (run exit code {run.poll()})")


def test_slurm_run_resubmits_a_cancelled_job_and_selects(slurm, tmp_path):
    ds, work = tiny_phantom_two_folds(tmp_path / "raw"), tmp_path / "work"
    wd = work / ds.name
    env = slurm.env
    cmd = _segkit("run", str(ds), "--work", str(work), "-c", "3d_fullres", *TINY, "--executor", "slurm",
                  "--slurm-gpus-per-job", "0", "--slurm-cpus-per-job", "1", "--poll-seconds", "1", env=env)
    with open(tmp_path / "run.log", "w") as log:
        run = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=log, text=True, encoding="utf-8", errors="replace")
        try:
            cancelled = _cancel_first_training(wd / "jobs.json", env, run)
            out, _ = run.communicate(timeout=480)
        finally:
            if run.poll() is None:
                run.kill()
    err = (tmp_path / "run.log").read_text()
    assert run.returncode == 0, err[-3000:]
    assert "selected: 3d_fullres" in out
    assert (wd / "selection.json").is_file()
    jobs = json.loads((wd / "jobs.json").read_text())
    assert jobs["executor"] == "slurm"
    assert {k: v["status"] for k, v in jobs["jobs"].items()} == {
        "prepare": "finished", "train/3d_fullres/0": "finished", "train/3d_fullres/1": "finished",
        "select": "finished"}
    fold0 = jobs["jobs"]["train/3d_fullres/0"]
    assert fold0["attempts"] == 2 and str(fold0["job_id"]) != cancelled  # resubmitted as a new job
    assert f"job {cancelled} failed" in err
    for k in (0, 1):
        fold = wd / "models" / "3d_fullres" / f"fold_{k}"
        assert (fold / "checkpoint_final.pt").is_file() and (fold / "validation" / "summary.json").is_file()
    # every job went through SLURM: one submitit folder per sbatch (5), logs of the 4 that ran
    assert len(list((wd / "cluster_jobs").glob("*/*_submitted.pkl"))) == 5
    assert len(list((wd / "cluster_jobs").glob("*/*_log.out"))) >= 4

    status = subprocess.run(_segkit("status", str(ds), "--work", str(work), env=env), env=env,
                            capture_output=True, text=True, encoding="utf-8", errors="replace", check=True).stdout
    assert "executor: slurm" in status and "4 finished" in status and "0 failed" in status
    assert "train/3d_fullres/1" in status and "1/1" in status
