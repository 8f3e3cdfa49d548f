"""Job graph, its walk (dependencies, bounded resubmission, skipping, re-attaching), status, sharding."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from toolkit.cli import cli
from toolkit.errors import SegkitError
from toolkit.inference.pipeline import shard
from toolkit.pipeline.jobs import Job, run_graph, training_graph
from toolkit.pipeline.state import JobState, format_status, status_rows
from toolkit.workdir import WorkDir

PLANS = {"configurations": {"3d_fullres": {}, "3d_lowres": {}, "3d_cascade_fullres": {"previous_stage": "3d_lowres"}}}


class FakeEngine:
    """Runs each job at submission; ``fail`` maps a key to how many attempts fail first."""

    name = "fake"

    def __init__(self, fail: dict[str, int] | None = None, alive: set[str] | None = None) -> None:
        self.fail, self.alive, self.order, self.next_id = dict(fail or {}), alive or set(), [], 100

    def submit(self, job: Job):
        self.next_id += 1
        self.order.append(job.key)
        if self.fail.get(job.key, 0) > 0:
            self.fail[job.key] -= 1
            return _Done(str(self.next_id), ("failed", "killed"))
        return _Done(str(self.next_id), ("finished", job.fn(*job.args)))

    def attach(self, job_id: str):
        return _Done(job_id, ("finished", "attached")) if job_id in self.alive else None


class _Done:
    def __init__(self, job_id, outcome):
        self.job_id, self._outcome = job_id, outcome

    def outcome(self):
        return self._outcome


def _echo(*args):
    return "/".join(map(str, args))


def _graph(done=frozenset()):
    def make(config, fold):
        return _echo, (config, fold), (lambda: (config, fold) in done)

    return training_graph(PLANS, ["3d_lowres", "3d_cascade_fullres", "3d_fullres"], [0, 1], make, (_echo, ("sel",)))


@pytest.fixture
def wd(tmp_path):
    w = WorkDir.for_dataset(tmp_path / "work", tmp_path / "Dataset001_X")
    w.root.mkdir(parents=True)
    return w


def test_graph_dependencies():
    jobs = {j.key: j for j in _graph()}
    assert jobs["train/3d_cascade_fullres/1"].deps == ("train/3d_lowres/0", "train/3d_lowres/1")
    assert jobs["train/3d_fullres/0"].deps == () and jobs["train/3d_lowres/1"].deps == ()
    assert set(jobs["select"].deps) == {k for k in jobs if k.startswith("train/")} and len(jobs) == 7


def test_walk_respects_dependencies_and_retries(wd):
    engine, state = FakeEngine(fail={"train/3d_lowres/1": 2}), JobState(wd)
    results = run_graph(engine, state, _graph(), max_retries=2, poll_s=0)
    assert results["select"] == "sel" and results["train/3d_cascade_fullres/0"] == "3d_cascade_fullres/0"
    order = engine.order
    last_lowres = max(i for i, k in enumerate(order) if k.startswith("train/3d_lowres"))
    assert all(order.index(f"train/3d_cascade_fullres/{f}") > last_lowres for f in (0, 1))
    assert order[-1] == "select" and order.count("train/3d_lowres/1") == 3
    saved = JobState(wd).jobs
    assert saved["train/3d_lowres/1"]["attempts"] == 3 and "error" not in saved["train/3d_lowres/1"]
    assert all(v["status"] == "finished" for v in saved.values())


def test_walk_gives_up_after_max_retries_and_blocks_dependants(wd):
    engine, state = FakeEngine(fail={"train/3d_lowres/0": 5}), JobState(wd)
    with pytest.raises(SegkitError, match="did not finish"):
        run_graph(engine, state, _graph(), max_retries=1, poll_s=0)
    assert engine.order.count("train/3d_lowres/0") == 2
    assert not any(k.startswith("train/3d_cascade") or k == "select" for k in engine.order)
    assert "train/3d_fullres/1" in engine.order  # independent work still ran
    saved = JobState(wd).jobs
    assert saved["train/3d_lowres/0"]["status"] == "failed" and saved["train/3d_lowres/0"]["error"] == "killed"
    assert saved["select"]["error"] == "a job it depends on failed"


def test_finished_work_is_skipped_and_live_jobs_reattached(wd):
    state = JobState(wd)
    state.executor = "fake"
    state.set("train/3d_fullres/0", "running", job_id="7", attempts=1)
    engine = FakeEngine(alive={"7"})
    results = run_graph(engine, state, _graph(done={("3d_lowres", 0), ("3d_lowres", 1)}), poll_s=0)
    assert not any(k.startswith("train/3d_lowres") for k in engine.order)
    assert "train/3d_fullres/0" not in engine.order and results["train/3d_fullres/0"] == "attached"
    assert JobState(wd).jobs["train/3d_lowres/0"]["status"] == "finished"


def test_status_merges_state_file_and_model_folders(wd, tmp_path):
    state = JobState(wd)
    state.executor = "slurm"
    state.set("prepare", "finished", job_id="1", attempts=1)
    state.set("train/2d/0", "failed", job_id="2", attempts=3, error="boom")
    state.set("train/2d/1", "running", job_id="3", attempts=1)
    done = wd.model("2d", 1)
    (done / "validation").mkdir(parents=True)
    (done / "checkpoint_final.pt").write_bytes(b"x")
    (done / "validation" / "summary.json").write_text("{}")
    (done / "training_log.txt").write_text("epoch 1/2  train_loss 1\nepoch 2/2  train_loss 0.5\n")
    partial = wd.model("3d_fullres", 0)
    partial.mkdir(parents=True)
    (partial / "checkpoint_latest.pt").write_bytes(b"x")
    rows = {r["job"]: r for r in status_rows(wd)}
    assert rows["train/2d/1"]["status"] == "finished" and rows["train/2d/1"]["epoch"] == "2/2"
    assert rows["train/2d/0"]["status"] == "failed" and rows["train/2d/0"]["attempts"] == 3
    assert rows["train/3d_fullres/0"]["status"] == "waiting"
    text = format_status(list(rows.values()), "slurm")
    assert "executor: slurm" in text and "(boom)" in text and "2 finished" in text and "1 failed" in text
    out = CliRunner().invoke(cli, ["status", str(tmp_path), "--work", str(tmp_path / "work")])
    assert out.exit_code == 0  # an unrelated folder: simply no jobs
    assert "no jobs yet" in out.output


def test_state_file_rules(wd):
    state = JobState(wd)
    with pytest.raises(ValueError):
        state.set("x", "exploded")
    state.set("x", "failed", error="e", attempts=1)
    state.set("x", "finished")
    saved = json.loads((wd.root / "jobs.json").read_text())["jobs"]["x"]
    assert saved["status"] == "finished" and saved["attempts"] == 1 and "error" not in saved


@pytest.mark.parametrize("n,k", [(10, 3), (2, 4), (7, 1), (0, 2)])
def test_shards_partition_the_sorted_cases(n, k):
    items = [f"case_{i:03d}" for i in range(n)]
    parts = [shard(items, k, i) for i in range(k)]
    assert sorted(x for p in parts for x in p) == items
    assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_bad_part_id_is_a_one_line_error(tmp_path):
    with pytest.raises(SegkitError):
        shard([1, 2], 2, 2)
    out = CliRunner().invoke(cli, ["predict", "-m", str(tmp_path), "-i", str(tmp_path), "-o", str(tmp_path / "o"),
                                   "--num-parts", "2", "--part-id", "5"])
    assert out.exit_code != 0
