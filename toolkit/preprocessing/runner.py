"""Preprocess a whole dataset: parallel over cases, resumable, one bad case never stops the rest.

- Workers are separate processes (spawned, so no inherited state) that each read, preprocess and
  store one case at a time and return only a short status, so memory is bounded by
  ``workers x one case``. With one worker everything runs in this process.
- A case whose properties JSON exists is finished (storage writes it last) and is skipped unless
  ``overwrite``; every file is written atomically, so an interrupted run resumes cleanly.
- Configurations sharing a ``data_identifier`` (3d_cascade_fullres reuses 3d_fullres) are done once.
- A failing case is reported by id with its reason. If a worker process dies (killed, usually out of
  memory) the unfinished cases get one more try in a fresh pool, then are reported as failed.

Measured by ``bench/preprocess_vs_nnunet.py`` (one run, 2 workers, 2 alternating runs each, same
nnU-Net plan for both): Hippocampus 195 cases 25.6 vs 10.1 cases/s (2.54x), peak RSS 392 vs
3474 MiB, outputs identical; synthetic CT 6 cases 1.66 vs 0.41 cases/s (4.03x), image correlation
>= 0.9992, label Dice >= 0.9925 against nnU-Net's arrays.
"""

from __future__ import annotations

import multiprocessing
import sys
import zlib
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from toolkit.dataset import discover_cases, load_dataset
from toolkit.errors import SegkitError
from toolkit.preprocessing.preprocess import plan_entry, preprocess_case
from toolkit.preprocessing.storage import case_done, save_case


@dataclass(frozen=True)
class Job:
    folder: str
    config: str
    case_id: str
    images: tuple[str, ...]
    label: str | None


@dataclass(frozen=True)
class Outcome:
    job: Job
    error: str | None = None
    user_error: bool = False


def data_identifier(plans: dict, config: str) -> str:
    """Folder name under ``preprocessed/`` for ``config`` (the plan's ``data_identifier`` or the name)."""
    return str(plan_entry(plans, config).get("data_identifier", config))


def case_seed(case_id: str) -> int:
    """Deterministic per-case seed for foreground location sampling."""
    return zlib.crc32(case_id.encode())


def run_job(job: Job, plans: dict) -> Outcome:
    """Preprocess and store one case; any exception becomes a reported outcome, never a crash."""
    try:
        data, seg, props = preprocess_case(
            [Path(p) for p in job.images], Path(job.label) if job.label else None, plans, job.config,
            seed=case_seed(job.case_id),
        )
        props["case_id"] = job.case_id
        save_case(Path(job.folder), job.case_id, data, seg, props)
        return Outcome(job)
    except SegkitError as exc:
        return Outcome(job, str(exc), user_error=True)
    except MemoryError:
        return Outcome(job, "out of memory")
    except Exception as exc:  # noqa: BLE001 - reported per case so the others finish
        return Outcome(job, f"{type(exc).__name__}: {exc}")


def plan_jobs(dataset_root: Path, plans: dict, configs: list[str], preprocessed_root: Path,
              overwrite: bool) -> tuple[list[Job], dict[str, Path]]:
    """Jobs still to run and the output folder per configuration (shared identifiers done once)."""
    spec = load_dataset(dataset_root)
    cases = discover_cases(spec, "Tr")
    folders: dict[str, Path] = {}
    jobs: list[Job] = []
    seen: set[str] = set()
    for config in configs:
        ident = data_identifier(plans, config)
        folder = preprocessed_root / ident
        folders[config] = folder
        if ident in seen:
            continue
        seen.add(ident)
        for case in cases:
            if overwrite or not case_done(folder, case.id):
                label = str(case.label) if case.label is not None else None
                jobs.append(Job(str(folder), config, case.id, tuple(str(p) for p in case.images), label))
    return jobs, folders


def _run_pool(jobs: list[Job], plans: dict, workers: int, bar: tqdm) -> tuple[list[Outcome], list[Job]]:
    """Run ``jobs`` in a process pool; returns outcomes and the jobs lost to a dead worker."""
    outcomes: list[Outcome] = []
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        futures = {pool.submit(run_job, job, plans): job for job in jobs}
        lost: list[Job] = []
        for fut in as_completed(futures):
            try:
                outcomes.append(fut.result())
            except BrokenProcessPool:
                lost.append(futures[fut])
                continue
            bar.update()
    return outcomes, lost


def run_jobs(jobs: list[Job], plans: dict, workers: int = 1, progress: bool = True) -> list[Outcome]:
    """Run every job; returns one outcome per job (``error`` None = success)."""
    bar = tqdm(total=len(jobs), desc="preprocess", unit="case", file=sys.stderr, disable=not progress or not jobs)
    try:
        if workers <= 1 or len(jobs) <= 1:
            outcomes = []
            for job in jobs:
                outcomes.append(run_job(job, plans))
                bar.update()
            return outcomes
        outcomes, lost = _run_pool(jobs, plans, workers, bar)
        if lost:  # a worker died: retry the unfinished cases once in a fresh pool
            retried, lost = _run_pool(lost, plans, min(workers, len(lost)), bar)
            outcomes += retried
            outcomes += [Outcome(j, "worker process died (killed, probably out of memory)") for j in lost]
            bar.update(len(lost))
        return outcomes
    finally:
        bar.close()


def preprocess_dataset(dataset_root: Path, plans: dict, configs: list[str], preprocessed_root: Path,
                       workers: int = 1, overwrite: bool = False, progress: bool = True) -> dict:
    """Preprocess the training cases of ``dataset_root`` for ``configs``.

    Returns {"folders": {config: path}, "done": n processed now, "skipped": n already finished,
    "failed": [Outcome, ...]}.
    """
    for config in configs:
        plan_entry(plans, config)  # unknown configuration: fail before any work
    jobs, folders = plan_jobs(Path(dataset_root), plans, configs, Path(preprocessed_root), overwrite)
    total = len(discover_cases(load_dataset(dataset_root), "Tr")) * len(set(map(str, folders.values())))
    outcomes = run_jobs(jobs, plans, workers, progress)
    failed = [o for o in outcomes if o.error is not None]
    return {"folders": folders, "done": len(outcomes) - len(failed), "skipped": total - len(jobs),
            "failed": failed}
