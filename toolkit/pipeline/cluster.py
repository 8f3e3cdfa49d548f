"""``segkit run --executor slurm``: one SLURM job per (configuration, fold), submitted with submitit.

The submitting process (a login node, a tmux session) runs :func:`toolkit.pipeline.jobs.run_graph`:
a ``prepare`` job, then the training jobs as their dependencies finish, then ``select``. Jobs run the
same functions as ``segkit run`` does locally (:mod:`toolkit.pipeline.run`), so a resubmitted training
resumes from its checkpoint. A job's outcome comes from submitit's result file; when a job leaves the
queue without one (scancel, node failure, preemption without requeue) it counts as failed after two
polls, so this also works on clusters without SLURM accounting (``sacct`` disabled). A training job
asks for ``gpus_per_job`` GPUs and trains with as many data-parallel ranks; the others ask for none.
submitit sends SIGUSR2 before a time limit: the trainer saves its last completed epoch and stops, the
job fails, and it is resubmitted (bounded by ``max_retries``).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from toolkit.dataset import load_dataset
from toolkit.errors import SegkitError
from toolkit.io.atomic import read_json
from toolkit.pipeline.jobs import Job, run_graph, training_graph
from toolkit.pipeline.run import RunOptions, prepare_run, run_training, select_models
from toolkit.pipeline.state import JobState, fold_finished, train_key
from toolkit.workdir import WorkDir


@dataclass(frozen=True)
class SlurmOptions:
    partition: str | None = None
    gpus_per_job: int = 1  # training jobs; prepare/select ask for none
    time: str | None = None  # sbatch --time (e.g. 2-00:00:00); None: the partition's default
    cpus_per_job: int | None = None
    mem_gb: float | None = None
    max_retries: int = 2
    poll_s: float = 15.0


def _squeue_state(job_id: str) -> str | None:
    """The job's state as squeue reports it, None once it left the queue."""
    out = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True)
    state = out.stdout.strip() if out.returncode == 0 else ""
    return state.splitlines()[0] if state else None


class _SlurmHandle:
    def __init__(self, job: Any) -> None:
        self.job, self.job_id, self._gone_polls = job, str(job.job_id), 0

    def outcome(self) -> tuple[str, Any] | None:
        if self.job.paths.result_pickle.exists():
            error = self.job.exception()
            if error is None:
                return "finished", self.job.result()
            return "failed", _last_line(str(error))
        if _squeue_state(self.job_id) is not None:
            self._gone_polls = 0
            return None
        self._gone_polls += 1  # left the queue: give the result file one more poll to appear
        if self._gone_polls < 2:
            return None
        return "failed", "the job left the queue without a result (cancelled, preempted, timed out or killed)"


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else "unknown error"


class SlurmEngine:
    """submitit's SlurmExecutor, one parameter set per job kind."""

    name = "slurm"

    def __init__(self, folder: Path, options: SlurmOptions) -> None:
        import submitit

        self.folder, self.options = Path(folder), options
        try:
            self.executor = submitit.SlurmExecutor(folder=self.folder / "%j", max_num_timeout=options.max_retries)
        except RuntimeError as exc:  # no srun on PATH
            raise SegkitError(f"--executor slurm: {exc}") from None

    def _parameters(self, job: Job) -> dict[str, Any]:
        """sbatch parameters of one job; None leaves a flag out (submitit skips it), so a time limit
        is only set when asked for (submitit's own default would be 5 minutes)."""
        o = self.options
        gpus = o.gpus_per_job if job.key.startswith("train/") and o.gpus_per_job > 0 else None
        return {"job_name": f"segkit-{job.key.replace('/', '-')}", "partition": o.partition,
                "cpus_per_task": o.cpus_per_job, "mem": f"{int(o.mem_gb)}G" if o.mem_gb else None,
                "time": o.time, "gpus_per_node": gpus}

    def submit(self, job: Job) -> _SlurmHandle:
        self.executor.update_parameters(**self._parameters(job))
        try:
            return _SlurmHandle(self.executor.submit(job.fn, *job.args))
        except subprocess.CalledProcessError as exc:
            raise SegkitError(f"sbatch refused {job.key}: {_last_line(str(exc.output or exc))}") from None

    def attach(self, job_id: str) -> _SlurmHandle | None:
        import submitit

        job = submitit.SlurmJob(folder=self.folder / "%j", job_id=job_id)
        if job.paths.result_pickle.exists() or _squeue_state(job_id) is not None:
            return _SlurmHandle(job)
        return None


def run_on_cluster(dataset: str | Path, work: str | Path | None, opts: RunOptions,
                   slurm: SlurmOptions, engine: Any = None) -> dict[str, Any]:
    """The whole method, fanned out as jobs; returns the same summary as ``run_pipeline``."""
    spec = load_dataset(dataset)
    root = spec.root.resolve()
    wd = WorkDir.for_dataset(work, root)
    work = Path(wd.root).resolve().parent  # absolute: jobs may start in another directory
    wd.root.mkdir(parents=True, exist_ok=True)
    engine = engine or SlurmEngine(wd.root / "cluster_jobs", slurm)
    state = JobState(wd)
    state.executor = engine.name
    state.save()
    walk = {"max_retries": slurm.max_retries, "poll_s": slurm.poll_s}
    prep = run_graph(engine, state, [Job("prepare", prepare_run, (root, work, opts))], **walk)["prepare"]
    train_opts = replace(opts, num_gpus=max(1, slurm.gpus_per_job))

    def make(config: str, fold: int | str) -> tuple:
        return run_training, (root, work, config, fold, train_opts), lambda: fold_finished(wd.model(config, fold))

    select = (select_models, (root, work, opts, prep)) if opts.select and prep.selects else None
    jobs = training_graph(read_json(wd.plans), prep.configs, prep.folds, make, select)
    results = run_graph(engine, state, jobs, **walk)
    status = {c: {f: results.get(train_key(c, f), "done before") for f in prep.folds} for c in prep.configs}
    selection = results.get("select")
    if selection is None and wd.selection.is_file() and opts.select:
        selection = read_json(wd.selection)
    return {"work": str(wd.root), "status": status, "selection": selection}
