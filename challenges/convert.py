"""Raw download -> canonical dataset, and canonical predictions -> submission, for any adapter.

The output folder is built in a staging folder beside it (``.<name>.partial``) and renamed into
place only when complete and verified, so a crash never leaves a half dataset under the final name.
Every file inside the staging folder is itself written atomically, so an interrupted conversion of
the same download into the same OUT resumes where it stopped (files already there are kept). RAW
is only ever read.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from challenges.base import Adapter, RawCase, Volume
from challenges.folder_volumes import read_header
from challenges.regions import apply_regions
from toolkit.errors import SegkitError
from toolkit.io.atomic import atomic_write_json, atomic_write_path
from toolkit.io.images import ending_of, read_image, write_image

_INTEGER_PIXELS = {"8-bit unsigned integer", "8-bit signed integer", "16-bit unsigned integer",
                   "16-bit signed integer", "32-bit unsigned integer", "32-bit signed integer",
                   "64-bit unsigned integer", "64-bit signed integer"}
# Formats whose header names a separate data file: never byte-copied under a new name.
_HEADER_DATA = {".mhd", ".nhdr"}


def convert(adapter: Adapter, raw: str | Path, out: str | Path, overwrite: bool = False) -> dict[str, Any]:
    """Convert the download ``raw`` into the canonical dataset folder ``out``; returns a summary."""
    raw, out = Path(raw), Path(out)
    adapter.check_layout(raw)
    _check_output(out, overwrite, raw)
    cases = list(adapter.discover(raw))
    _check_cases(cases, raw, adapter)
    ending = adapter.config.get("file_ending", ".nii.gz")
    meta = adapter.metadata(raw)
    allowed = _label_values(meta.get("labels", {}))  # the files keep their values; regions only relabel dataset.json
    meta = apply_regions(meta, adapter.config)
    training = [c for c in cases if c.is_training]
    with _staging(out, overwrite, marker=_job_marker(adapter, raw)) as tmp:
        for case in _progress(cases, f"convert {adapter.name}"):
            write_case(case, tmp, ending, allowed)
        atomic_write_json(tmp / "dataset.json", _dataset_json(meta, adapter, len(training),
                                                              len(cases) - len(training), ending))
        atomic_write_json(tmp / "groups.json", {c.id: c.group or c.id for c in training})
        for name, content in adapter.sidecars(cases).items():
            atomic_write_json(tmp / name, content)
        splits = adapter.splits([c.id for c in training])
        if splits is not None:
            atomic_write_json(tmp / "splits_final.json", splits)
        _verify(tmp, out)
    return {"dataset": str(out), "training": len(training), "test": len(cases) - len(training),
            "patients": len({c.group or c.id for c in training})}


def make_submission(adapter: Adapter, pred_dir: str | Path, out: str | Path,
                    overwrite: bool = False) -> list[Path]:
    """Write canonical predictions in ``pred_dir`` into the challenge's format in ``out``."""
    pred_dir, out = Path(pred_dir), Path(out)
    _check_output(out, overwrite, pred_dir)
    with _staging(out, overwrite, marker=None) as tmp:
        written = adapter.write_submission(pred_dir, tmp)
    return [out / p.relative_to(tmp) for p in written]


# -- writing cases ------------------------------------------------------------------------------

def write_case(case: RawCase, root: Path, ending: str, allowed: set[int]) -> None:
    """Write one case's channel files (and label) under ``root`` in the canonical layout."""
    split = "Tr" if case.is_training else "Ts"
    for channel, volume in enumerate(case.images):
        target = root / f"images{split}" / f"{case.id}_{channel:04d}{ending}"
        if not target.exists():
            _write_volume(volume, target)
    if case.label is not None:
        target = root / "labelsTr" / f"{case.id}{ending}"
        if not target.exists():
            _write_label(case.label, target, allowed)


def transfer_image(src: Path, dst: Path) -> None:
    """Copy ``src`` to ``dst`` byte for byte when the format allows, else re-encode it exactly."""
    if _copyable(src, dst):
        _atomic_copy(src, dst)
    else:
        array, geometry = read_image(src)
        write_image(array, geometry, dst)


def _write_volume(volume: Volume, target: Path) -> None:
    if volume.path is not None and volume.load is None:
        transfer_image(volume.path, target)
    else:
        array, geometry = volume.read()
        write_image(array, geometry, target)


def _write_label(volume: Volume, target: Path, allowed: set[int]) -> None:
    """Labels are copied when stored as integers, else read, checked integral and cast to uint8."""
    if volume.path is not None and volume.load is None and _copyable(volume.path, target) \
            and _pixel_type(volume.path) in _INTEGER_PIXELS:
        _atomic_copy(volume.path, target)
        return
    array, geometry = volume.read()
    where = volume.path or target
    if not np.issubdtype(array.dtype, np.integer) and (
            not np.all(np.isfinite(array)) or not np.array_equal(array, np.round(array))):
        raise SegkitError("label file holds non-integer values", where)
    values = {int(v) for v in np.unique(array)}
    unknown = sorted(values - allowed) if allowed else []
    if unknown:
        raise SegkitError(f"label file holds value(s) {unknown} not in the challenge's labels "
                          f"{sorted(allowed)}", where)
    dtype = np.uint8 if max(values, default=0) < 256 and min(values, default=0) >= 0 else np.int16
    write_image(array.astype(dtype), geometry, target)


def _copyable(src: Path, dst: Path) -> bool:
    return ending_of(src) == ending_of(dst) and ending_of(src) not in _HEADER_DATA


def _pixel_type(path: Path) -> str:
    import SimpleITK as sitk

    return sitk.GetPixelIDValueAsString(read_header(path, "unreadable image header").GetPixelID())


def _atomic_copy(src: Path, dst: Path) -> None:
    with atomic_write_path(dst) as tmp:
        shutil.copyfile(src, tmp)


# -- dataset-level files ------------------------------------------------------------------------

def _label_values(labels: dict[str, Any]) -> set[int]:
    values: set[int] = set()
    for v in labels.values():
        values.update(v if isinstance(v, list) else [v])
    return values


def _dataset_json(meta: dict[str, Any], adapter: Adapter, n_train: int, n_test: int, ending: str) -> dict:
    channels = meta.get("channel_names")
    if isinstance(channels, list):
        channels = {str(i): str(c) for i, c in enumerate(channels)}
    if not channels or not meta.get("labels"):
        raise SegkitError(f"the {adapter.name} adapter needs channel_names and labels "
                          f"(set them with -O channel_names=[CT] -O 'labels={{background: 0, organ: 1}}')")
    data = {
        "channel_names": {str(k): str(v) for k, v in channels.items()},
        "labels": {str(k): v for k, v in meta["labels"].items()},
        "numTraining": n_train,
        "numTest": n_test,
        "file_ending": ending,
        "name": meta.get("name", adapter.name),
        "description": meta.get("description", ""),
        "reference": meta.get("reference", ""),
        "licence": meta.get("licence", ""),
        "release": meta.get("release", ""),
        "challenge": adapter.name,
    }
    if "regions_class_order" in meta:
        data["regions_class_order"] = meta["regions_class_order"]
    if "training" in adapter.config:  # a challenge-specific training recipe for the engine (e.g. CREMI)
        data["segkit_training"] = adapter.config["training"]
    return data


def _verify(tmp: Path, out: Path) -> None:
    from toolkit.dataset.verify import verify_dataset

    problems = verify_dataset(tmp)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise SegkitError(f"converted dataset fails verification: {problems[0]}{more}; "
                          f"partial result kept in {tmp.name}", out)


def _check_cases(cases: list[RawCase], raw: Path, adapter: Adapter) -> None:
    seen: set[str] = set()
    for case in cases:
        if case.id in seen:
            raise SegkitError(f"two cases would both be named {case.id!r}", raw)
        seen.add(case.id)
    if not any(c.is_training for c in cases):
        raise SegkitError(f"no training case (image with label) found for {adapter.name}", raw)


# -- output folder handling ---------------------------------------------------------------------

def _job_marker(adapter: Adapter, raw: Path) -> str:
    """What a staging folder is converting: the adapter, RAW and its options (another option, another job)."""
    options = hashlib.sha256(json.dumps(adapter.config, sort_keys=True, default=str).encode()).hexdigest()
    return f"{adapter.name}\n{raw.resolve()}\n{options}\n"


def _check_output(out: Path, overwrite: bool, source: Path) -> None:
    src, dst = source.resolve(), out.resolve()
    if dst == src or dst.is_relative_to(src) or src.is_relative_to(dst):
        raise SegkitError(f"output must lie outside the input folder {source}", out)
    if out.exists() and not out.is_dir():
        raise SegkitError("output exists and is not a folder", out)
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise SegkitError("output folder is not empty (use --overwrite to replace it)", out)


@contextlib.contextmanager
def _staging(out: Path, overwrite: bool, marker: str | None) -> Iterator[Path]:
    """Yield a staging folder beside ``out``; on success move it onto ``out``.

    With a ``marker`` (what is being converted) a leftover staging folder of the same job is resumed;
    one of another job, or any leftover when ``marker`` is None, is discarded.
    """
    tmp = out.parent / f".{out.name}.partial"
    stamp = tmp / ".segkit-source"
    if tmp.exists() and (marker is None or not stamp.is_file() or stamp.read_text(encoding="utf-8") != marker):
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True, exist_ok=True)
    if marker is not None:
        stamp.write_text(marker)
    yield tmp
    if stamp.exists():
        stamp.unlink()
    old = None
    if out.is_dir():
        if any(out.iterdir()):
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            os.replace(out, old)
        else:
            out.rmdir()
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _progress(items: list, desc: str):
    from tqdm import tqdm

    return tqdm(items, desc=desc, unit="case", file=sys.stderr, disable=len(items) < 2, leave=False)

