"""The job graph of a ``segkit run`` and a scheduler that walks it on any engine (cluster fan-out).

Jobs: ``prepare`` (verify, fingerprint, plan, preprocess, split), one ``train/<config>/<fold>`` per
trained fold, and ``select``. Dependencies: every training after ``prepare``; a cascade full-res fold
after *all* folds of its low-res stage (it trains on their predictions of every training case);
``select`` after every training. The graph is data (:func:`training_graph`), the walk is
:func:`run_graph`: it submits each job once its dependencies finished, polls, resubmits failed,
preempted or vanished jobs up to ``max_retries`` times (a training job resumes from its
``checkpoint_latest.pt``: the per-fold function already does), and records everything in jobs.json.
A job whose outputs already exist is marked finished without being submitted, so re-running the
command after the submitting process died continues the run; jobs the state file says are still
queued or running are re-attached when the engine still knows them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from toolkit.errors import SegkitError
from toolkit.pipeline.stages import log
from toolkit.pipeline.state import JobState, train_key


@dataclass(frozen=True)
class Job:
    key: str
    fn: Callable[..., Any]  # a module-level function (pickled by reference into the job)
    args: tuple[Any, ...]
    deps: tuple[str, ...] = ()
    done: Callable[[], bool] | None = None  # outputs exist: nothing to submit


class Handle(Protocol):
    job_id: str

    def outcome(self) -> tuple[str, Any] | None:
        """None while queued or running; ("finished", result) or ("failed", one-line reason)."""


class Engine(Protocol):
    name: str

    def submit(self, job: Job) -> Handle: ...

    def attach(self, job_id: str) -> Handle | None:
        """A handle for a job submitted earlier, if the engine still has it queued or running."""


def training_graph(plans: dict[str, Any], configs: list[str], folds: list[int | str],
                   make: Callable[[str, int | str], tuple[Callable[..., Any], tuple[Any, ...], Callable[[], bool]]],
                   select: tuple[Callable[..., Any], tuple[Any, ...]] | None) -> list[Job]:
    """Training jobs (``make(config, fold) -> (fn, args, done)``) and the selection job after them all."""
    jobs = []
    for config in configs:
        prev = plans["configurations"][config].get("previous_stage")
        deps = tuple(train_key(prev, f) for f in folds) if prev in configs else ()
        for fold in folds:
            fn, args, done = make(config, fold)
            jobs.append(Job(train_key(config, fold), fn, args, deps, done))
    if select is not None:
        jobs.append(Job("select", select[0], select[1], tuple(j.key for j in jobs)))
    return jobs


@dataclass
class _Walk:
    waiting: dict[str, Job]
    running: dict[str, tuple[Job, Handle]] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)


def run_graph(engine: Engine, state: JobState, jobs: list[Job], max_retries: int = 2,
              poll_s: float = 5.0) -> dict[str, Any]:
    """Run ``jobs`` to the end; returns each job's result. Raises once nothing can go on if a job
    failed ``max_retries + 1`` times (its dependants are never submitted)."""
    walk = _Walk({j.key: j for j in jobs})
    for job in jobs:
        _adopt(engine, state, walk, job)
    while walk.waiting or walk.running:
        _submit_ready(engine, state, walk)
        _collect(engine, state, walk, max_retries)
        blocked = [k for k, j in walk.waiting.items() if any(d in walk.failed for d in j.deps)]
        for key in blocked:
            del walk.waiting[key]
            walk.failed[key] = "a job it depends on failed"
            state.set(key, "waiting", error="a job it depends on failed")
        if walk.running:
            time.sleep(poll_s)
        elif walk.waiting and not _submittable(walk):  # unknown dependency: a bug in the graph
            raise RuntimeError(f"jobs {sorted(walk.waiting)} wait for jobs that are not in the graph")
    if walk.failed:
        first = next(iter(walk.failed.items()))
        raise SegkitError(f"{len(walk.failed)} job(s) did not finish; first: {first[0]}: {first[1]} "
                          f"(see `segkit status`)", state.path)
    return walk.results


def _adopt(engine: Engine, state: JobState, walk: _Walk, job: Job) -> None:
    """Skip finished work; re-attach a job that is still queued or running from an earlier submitter."""
    if job.done is not None and job.done():
        state.set(job.key, "finished")
        del walk.waiting[job.key]
        walk.results[job.key] = "done before"
        return
    entry = state.get(job.key)
    if entry["status"] == "running" and entry.get("job_id") and state.executor == engine.name:
        handle = engine.attach(str(entry["job_id"]))
        if handle is not None:
            log(f"[{engine.name}] {job.key}: re-attached to job {handle.job_id}")
            walk.running[job.key] = (walk.waiting.pop(job.key), handle)
            return
    state.set(job.key, "waiting", job_id=None)


def _submittable(walk: _Walk) -> list[str]:
    return [k for k, j in walk.waiting.items() if all(d in walk.results for d in j.deps)]


def _submit_ready(engine: Engine, state: JobState, walk: _Walk) -> None:
    for key in _submittable(walk):
        job = walk.waiting.pop(key)
        handle = engine.submit(job)
        attempts = state.get(key).get("attempts", 0) + 1
        state.set(key, "running", job_id=handle.job_id, attempts=attempts)
        log(f"[{engine.name}] {key}: submitted as job {handle.job_id} (attempt {attempts})")
        walk.running[key] = (job, handle)


def _collect(engine: Engine, state: JobState, walk: _Walk, max_retries: int) -> None:
    for key, (job, handle) in list(walk.running.items()):
        outcome = handle.outcome()
        if outcome is None:
            continue
        del walk.running[key]
        kind, value = outcome
        if kind == "finished":
            walk.results[key] = value
            state.set(key, "finished")
            log(f"[{engine.name}] {key}: finished")
            continue
        attempts = state.get(key).get("attempts", 1)
        log(f"[{engine.name}] {key}: job {handle.job_id} failed (attempt {attempts}): {value}")
        if attempts <= max_retries:
            state.set(key, "waiting", error=str(value))
            walk.waiting[key] = job  # resubmitted next round; training resumes from its checkpoint
        else:
            state.set(key, "failed", error=str(value))
            walk.failed[key] = str(value)
