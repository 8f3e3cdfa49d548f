"""grand-challenge's default algorithm job as numbers, and the verdict on one self-test run against them.

The defaults are the platform's (sources in containers/README.md "The platform's default job"): an
algorithm's job gets 8 GB and no GPU unless its settings select more (a T4 must be chosen), which the
platform runs on a 2-vCPU, 8 GB instance; 1 GB is reserved for the system, so the process may use
(8 - 1) x 1024 = 7168 MB (the shim sets RLIMIT_DATA to it); a challenge phase gives each job 20 minutes.
The self-test runs every case under the same limits and refuses the image when a case would not fit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from toolkit.errors import SegkitError

PORT_VARIABLE = "GRAND_CHALLENGE_COMPONENT_USER_WEBSERVER_PORT"
DEFAULT_PORT = 4743
DEFAULT_MEMORY_MB = 7168  # 8 GB instance minus the 1 GB reserved for the system
DEFAULT_CPUS = 2.0  # ml.m7i.large, the cheapest instance with 8 GB and no GPU
DEFAULT_TIME_LIMIT_S = 1200  # a phase's algorithm_time_limit
_MEMORY_ERRORS = ("MemoryError", "Cannot allocate memory", "can't allocate memory", "out of memory")


@dataclass(frozen=True)
class JobLimits:
    """What one algorithm job may use: memory of the process, CPUs, wall time, GPUs."""

    memory_mb: int = DEFAULT_MEMORY_MB
    cpus: float = DEFAULT_CPUS
    time_limit_s: float = DEFAULT_TIME_LIMIT_S
    gpus: int = 0


PLATFORM_DEFAULT = JobLimits()


def parse_memory_mb(text: str) -> int:
    """``7168m``, ``7g``, ``7168`` (MB) -> megabytes (MiB, as docker and the platform count them)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([mMgG]?)[bB]?\s*", str(text))
    if not m:
        raise SegkitError(f"memory limit {text!r} is not a size like 7168m or 7g")
    value = float(m.group(1)) * (1024 if m.group(2).lower() == "g" else 1)
    if value < 64:
        raise SegkitError(f"memory limit {text!r} is below 64 MB")
    return int(value)


def memory_problem(logs: str) -> str | None:
    """The log line that says the process ran out of memory (RLIMIT_DATA makes allocations fail)."""
    for line in reversed(logs.strip().splitlines()):
        if any(marker in line for marker in _MEMORY_ERRORS):
            return line.strip()
    return None


def verdict(case: str, run: dict[str, Any], limits: JobLimits) -> str | None:
    """Why a case would fail on the platform under ``limits``, in one line; None when it fits.

    ``run``: ``exit_code``, ``seconds`` (the container's own run time), ``timed_out``, ``oom_killed``,
    ``logs``."""
    mem = f"{limits.memory_mb} MB"
    if run.get("oom_killed"):
        return f"{case} does not fit: killed at the job's memory limit of {mem} (a larger job must be chosen)"
    if run.get("timed_out"):
        return (f"{case} does not fit: still running at the phase's time limit of {limits.time_limit_s:.0f} s "
                f"with {limits.cpus:g} CPU(s); stopped")
    if run["exit_code"] != 0:
        line = memory_problem(run.get("logs", ""))
        if line:
            return f"{case} does not fit in {mem}: {line}"
        tail = " | ".join(run.get("logs", "").strip().splitlines()[-3:])
        return f"{case}: container exit {run['exit_code']}: {tail}"
    if run["seconds"] > limits.time_limit_s:
        return (f"{case} does not fit: took {run['seconds']:.0f} s, over the phase's time limit of "
                f"{limits.time_limit_s:.0f} s with {limits.cpus:g} CPU(s)")
    return None


def usage_line(case: str, seconds: float, peak_mb: float | None, limits: JobLimits) -> str:
    """``case: 312 s of 1200 s (26%), peak 2410 MB of 7168 MB (34%)`` for the self-test log."""
    time_part = f"{seconds:.1f} s of {limits.time_limit_s:.0f} s ({100 * seconds / limits.time_limit_s:.0f}%)"
    mem_part = ("peak memory not reported" if peak_mb is None else
                f"peak {peak_mb:.0f} MB of {limits.memory_mb} MB ({100 * peak_mb / limits.memory_mb:.0f}%)")
    return f"{case}: {time_part}, {mem_part}"
