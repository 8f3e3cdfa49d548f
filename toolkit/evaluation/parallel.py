"""Process-parallel map over cases, shared by evaluation, postprocessing and selection.

Workers are spawned (not forked): the caller may be a training process holding torch threads, and
forking such a process can deadlock. ``workers <= 1`` runs in-process, which tests and small
folders prefer (no start-up cost of about a second per pool). Spawned workers re-import the
caller's main module, so a script that calls this with ``workers > 1`` needs the usual
``if __name__ == "__main__":`` guard (the ``segkit`` console script has it).
"""

from __future__ import annotations

import multiprocessing
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


def parallel_map(fn: Callable[[Any], T], items: Sequence[Any], workers: int = 1, desc: str | None = None) -> list[T]:
    """``[fn(x) for x in items]`` in input order, over ``workers`` processes, with a tqdm bar on stderr.

    ``fn`` must be a module-level function and items picklable.
    """
    from tqdm import tqdm

    bar = dict(total=len(items), desc=desc, file=sys.stderr, disable=desc is None or len(items) < 2,
               leave=False)
    if workers <= 1 or len(items) < 2:
        return [fn(x) for x in tqdm(items, **bar)]
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(items)), mp_context=ctx) as pool:
        return list(tqdm(pool.map(fn, items), **bar))
