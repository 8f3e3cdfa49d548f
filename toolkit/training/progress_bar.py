"""The per-epoch progress bar and the fold's remaining time (a 250-iteration epoch takes minutes on a CPU).

:class:`FoldClock` estimates the time left for the whole fold (every remaining epoch, not only the
current one) from the mean wall time per training iteration since this process started training; that
mean includes validation, plotting and checkpoint writing, so after the first epoch it covers all of an
epoch's overhead. :func:`epoch_bar` is a tqdm bar on stderr with iterations/s and that estimate as a
postfix; it is shown only on rank 0 and only when stderr is a terminal (logs and pipes get the
per-epoch line of progress.py instead).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

from toolkit.training.progress import format_duration


class FoldClock:
    """Remaining time of a fold from the iterations done since ``start_epoch`` in this process."""

    def __init__(self, iters_per_epoch: int, epochs: int, start_epoch: int,
                 now: Callable[[], float] = time.monotonic) -> None:
        self.iters, self.epochs, self.start_epoch, self._now = iters_per_epoch, epochs, start_epoch, now
        self.t0 = now()

    def eta(self, epoch: int, done_in_epoch: int) -> float | None:
        """Seconds left once ``epoch`` epochs and ``done_in_epoch`` iterations of the next are done;
        None before the first iteration (nothing measured yet)."""
        done = (epoch - self.start_epoch) * self.iters + done_in_epoch
        if done <= 0:
            return None
        remaining = max(0, (self.epochs - epoch) * self.iters - done_in_epoch)
        return remaining * (self._now() - self.t0) / done


def eta_text(eta_s: float | None) -> str:
    return "fold ETA " + (format_duration(eta_s) if eta_s is not None else "?")


def bar_wanted(stream: Any = None) -> bool:
    """A bar only on a terminal: redirected output (files, pipes, job logs) would fill with redraws."""
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except (OSError, ValueError):  # a closed or detached stream
        return False


def epoch_bar(epoch: int, epochs: int, iterations: int, main: bool) -> Any:
    """A tqdm bar for the training iterations of epoch ``epoch`` (0-based); disabled off a terminal
    and on every rank but 0. Use as a context manager; it is cleared when the epoch ends."""
    from tqdm import tqdm

    stream = sys.stderr
    return tqdm(total=iterations, desc=f"epoch {epoch + 1}/{epochs}", unit="it", file=stream, leave=False,
                dynamic_ncols=True, disable=not (main and bar_wanted(stream)))
