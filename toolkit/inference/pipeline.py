"""Predict a folder of raw cases with preprocessing, network work and export overlapping.

Three stages run at once: a preprocessing thread reads and preprocesses the next cases, the calling
thread runs the networks, an export thread resamples and writes finished cases. Queues between them
hold at most ``queue_size`` cases, so memory stays bounded whatever the number or size of the cases.
Threads rather than processes: the heavy work (SimpleITK, scipy, torch) releases the GIL, and threads
need no pickling of large arrays nor process start-up (which dominates nnU-Net's per-case overhead on
small machines).

A case whose input is wrong (missing channel, channels on different grids, wrong dimension) is reported
as one line naming it; the other cases still finish, and the returned report says what failed. Cases
whose output already exists are skipped unless ``overwrite``; outputs are written atomically, so an
interrupted run resumes where it stopped.
"""

from __future__ import annotations

import queue
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from toolkit.dataset.layout import scan_images
from toolkit.errors import SegkitError
from toolkit.io.images import read_geometry, supported_endings


class CasePredictor(Protocol):
    """What the pipeline needs; :class:`~toolkit.inference.predictor.Predictor` and bundles provide it."""

    def preprocess(self, case_id: str, image_paths: list[Path]) -> Any: ...

    def predict(self, case: Any) -> Any: ...

    def export(self, probabilities: Any, case: Any, out_path: Path, save_probabilities: bool = False) -> None: ...


@dataclass
class PredictReport:
    predicted: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # case -> one-line problem
    internal_errors: int = 0


@dataclass
class InputCase:
    id: str
    images: list[Path]
    ending: str
    problem: str | None = None


def discover_inputs(in_dir: Path, num_channels: int) -> list[InputCase]:
    """Cases ``<case>_<XXXX><ending>`` of ``in_dir`` in any supported ending; incomplete ones carry a problem."""
    if not in_dir.is_dir():
        raise SegkitError("input folder not found", in_dir)
    cases: dict[str, InputCase] = {}
    for ending in supported_endings():
        by_case, _ = scan_images(in_dir, ending)
        for case_id, channels in by_case.items():
            if case_id in cases:
                cases[case_id].problem = f"case {case_id}: files with several endings"
                continue
            images = [channels.get(i, in_dir / f"{case_id}_{i:04d}{ending}") for i in range(num_channels)]
            case = InputCase(case_id, images, ending)
            missing = [p.name for p in images if not p.is_file()]
            extra = sorted(i for i in channels if i >= num_channels)
            if missing:
                case.problem = f"case {case_id}: missing channel file(s) {', '.join(missing)}"
            elif extra:
                case.problem = f"case {case_id}: unexpected channel(s) {extra} (the model takes {num_channels})"
            cases[case_id] = case
    if not cases:
        raise SegkitError("no images named <case>_<XXXX><ending> found", in_dir)
    return [cases[k] for k in sorted(cases)]


def shard(items: list, num_parts: int, part_id: int) -> list:
    """Part ``part_id`` of ``num_parts`` of a sorted list: every ``num_parts``-th item from ``part_id``
    (deterministic, sizes differ by at most one), so K jobs predict disjoint shards of one folder."""
    if num_parts < 1 or not 0 <= part_id < num_parts:
        raise SegkitError(f"--part-id must be in 0..{num_parts - 1} (got {part_id} with --num-parts {num_parts})")
    return items[part_id::num_parts]


def check_geometry(case: InputCase) -> None:
    """Header-only check that the channels are 2D/3D images on one grid; raises naming the case."""
    first = None
    for p in case.images:
        shape, geo = read_geometry(p)
        if geo.ndim not in (2, 3):
            raise SegkitError(f"case {case.id}: image is {geo.ndim}D, segkit predicts 2D or 3D images", p)
        if first is None:
            first = (shape, geo)
            continue
        diff = geo.differs_from(first[1]) or (f"shape {shape} vs {first[0]}" if shape != first[0] else None)
        if diff:
            raise SegkitError(f"case {case.id}: channel does not match channel 0 ({diff})", p)


_DONE = object()


def _report_failure(report: PredictReport, case_id: str, exc: BaseException) -> None:
    msg = str(exc) if isinstance(exc, SegkitError) else f"case {case_id}: internal error: {type(exc).__name__}: {exc}"
    if not isinstance(exc, SegkitError):
        report.internal_errors += 1
    report.failed[case_id] = msg
    print(f"segkit: error: {msg}", file=sys.stderr, flush=True)


def predict_folder(predictor: CasePredictor, in_dir: str | Path, out_dir: str | Path, num_channels: int,
                   overwrite: bool = False, save_probabilities: bool = False, queue_size: int = 2,
                   progress: bool = True, num_parts: int = 1, part_id: int = 0) -> PredictReport:
    """Predict every case of ``in_dir`` (or its shard ``part_id`` of ``num_parts``, see :func:`shard`)
    into ``out_dir`` (``<case><ending>`` and optional ``<case>.npz``)."""
    in_dir, out_dir = Path(in_dir), Path(out_dir)
    report = PredictReport()
    todo: list[tuple[InputCase, Path]] = []
    for case in shard(discover_inputs(in_dir, num_channels), num_parts, part_id):
        out = out_dir / f"{case.id}{case.ending}"
        done = out.is_file() and (not save_probabilities or (out_dir / f"{case.id}.npz").is_file())
        if done and not overwrite:
            report.skipped.append(case.id)
        elif case.problem:
            _report_failure(report, case.id, SegkitError(case.problem, in_dir))
        else:
            todo.append((case, out))
    out_dir.mkdir(parents=True, exist_ok=True)
    _run_stages(predictor, todo, report, save_probabilities, queue_size, progress)
    return report


def _run_stages(predictor: CasePredictor, todo: list[tuple[InputCase, Path]], report: PredictReport,
                save_probabilities: bool, queue_size: int, progress: bool) -> None:
    from tqdm import tqdm

    prepared: queue.Queue = queue.Queue(maxsize=queue_size)
    finished: queue.Queue = queue.Queue(maxsize=queue_size)
    lock = threading.Lock()

    def preprocess_worker() -> None:
        for case, out in todo:
            try:
                check_geometry(case)
                prepared.put((case, out, predictor.preprocess(case.id, case.images)))
            except Exception as exc:  # noqa: BLE001 - reported per case, the others go on
                with lock:
                    _report_failure(report, case.id, exc)
        prepared.put(_DONE)

    def export_worker() -> None:
        while (item := finished.get()) is not _DONE:
            case, out, pre, probs = item
            try:
                predictor.export(probs, pre, out, save_probabilities)
                with lock:
                    report.predicted.append(case.id)
            except Exception as exc:  # noqa: BLE001
                with lock:
                    _report_failure(report, case.id, exc)

    threads = [threading.Thread(target=preprocess_worker, daemon=True, name="segkit-preprocess"),
               threading.Thread(target=export_worker, daemon=True, name="segkit-export")]
    for t in threads:
        t.start()
    bar = tqdm(total=len(todo), desc="predict", unit="case", file=sys.stderr, disable=not progress or not todo)
    try:
        while (item := prepared.get()) is not _DONE:
            case, out, pre = item
            try:
                finished.put((case, out, pre, predictor.predict(pre)))
            except Exception as exc:  # noqa: BLE001
                with lock:
                    _report_failure(report, case.id, exc)
            bar.update(1)
    finally:
        finished.put(_DONE)
        threads[1].join()
        bar.close()
