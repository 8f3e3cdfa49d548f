"""What every challenge adapter is: a YAML of facts plus two small methods.

An adapter says *where* the cases of a raw download are (:meth:`Adapter.discover`, yielding
:class:`RawCase` objects) and *how* canonical predictions are named or encoded for the challenge
(:meth:`Adapter.write_submission`, by default a rename driven by the YAML). Everything else,
the atomic output folder, file copying, label casting, ``dataset.json``/``groups.json`` and the final
verification, lives in :mod:`challenges.convert` so that a new adapter stays around 50 lines.

Facts (labels, modalities, exclusions, submission names, container slugs) are data in
``challenges/<name>.yaml``, read with ``yaml.safe_load``; ``-O key=value`` options override them.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import yaml

from toolkit.errors import SegkitError
from toolkit.io.images import Geometry, read_image, supported_endings

Loader = Callable[[], "tuple[np.ndarray, Geometry]"]

#: YAML keys that state a fact about the challenge; each one present needs a ``sources:`` entry.
FACT_KEYS: tuple[str, ...] = ("labels", "submission", "exclude")
_SOURCE_KEYS = {"source", "unverified", "note"}


@dataclass(frozen=True)
class Volume:
    """One image to write: a file (copied when its format already fits) or a loader function."""

    path: Path | None = None
    load: Loader | None = None

    def read(self) -> tuple[np.ndarray, Geometry]:
        if self.load is not None:
            return self.load()
        assert self.path is not None
        return read_image(self.path)


@dataclass(frozen=True)
class RawCase:
    """One canonical case: its id, one volume per channel, its label (None = test case), its patient."""

    id: str
    images: tuple[Volume, ...]
    label: Volume | None = None
    group: str | None = None

    @property
    def is_training(self) -> bool:
        return self.label is not None


class Adapter:
    """Base class: subclasses set ``name`` and implement :meth:`check_layout` and :meth:`discover`."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    #: YAML keys stating challenge facts, each needing a ``sources:`` entry (see :func:`check_sources`)
    facts: ClassVar[tuple[str, ...]] = FACT_KEYS

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    # -- to implement ---------------------------------------------------------------------------
    def check_layout(self, raw: Path) -> None:
        """Raise a one-line :class:`SegkitError` (what was expected, what was found) if ``raw`` is wrong."""
        raise NotImplementedError

    def discover(self, raw: Path) -> Iterator[RawCase]:
        """Yield every training and test case of the download, in a stable order."""
        raise NotImplementedError

    # -- optional hooks ---------------------------------------------------------------------------
    def metadata(self, raw: Path) -> dict[str, Any]:
        """Dataset-level keys (channel_names, labels, name, ...); default: straight from the YAML."""
        keys = ("name", "description", "reference", "licence", "release", "channel_names", "labels")
        return {k: self.config[k] for k in keys if k in self.config}

    def splits(self, training_ids: list[str]) -> list[dict[str, list[str]]] | None:
        """A fixed ``splits_final.json`` for the dataset, or None to let the engine split by group."""
        return None

    def sidecars(self, cases: list[RawCase]) -> dict[str, Any]:
        """Extra JSON files for the dataset root (name -> content) that the submission step needs."""
        return {}

    def submission_name(self, case_id: str) -> str:
        """File name of a prediction in the challenge's format (YAML ``submission.pattern/name``)."""
        sub = self.config.get("submission", {})
        m = re.fullmatch(sub.get("pattern", r"(?P<case>.+)"), case_id)
        if m is None:
            raise SegkitError(f"prediction {case_id!r} does not match the {self.name} test-case naming "
                              f"{sub.get('pattern')!r}")
        return sub.get("name", "{case}.nii.gz").format(**m.groupdict(), **self.config.get("names", {}))

    def write_submission(self, pred_dir: Path, out_dir: Path) -> list[Path]:
        """Write the challenge's submission files into ``out_dir`` (a fresh staging folder)."""
        from challenges.convert import transfer_image

        written = []
        for case_id, path in prediction_files(pred_dir):
            target = out_dir / self.submission_name(case_id)
            transfer_image(path, target)
            written.append(target)
        return written

    # -- helpers for subclasses -------------------------------------------------------------------
    def expect(self, ok: bool, raw: Path, expected: str, found: str | None = None) -> None:
        """Raise the standard layout error unless ``ok``."""
        if not ok:
            found = found if found is not None else describe_folder(raw)
            raise SegkitError(f"not a {self.name} download: expected {expected}; found {found}", raw)

    @property
    def container(self) -> dict[str, Any]:
        """Grand-challenge container interface (input/output slugs) for ``segkit package``."""
        return self.config.get("container", {})


def prediction_files(pred_dir: Path) -> list[tuple[str, Path]]:
    """Canonical predictions ``<case><ending>`` in ``pred_dir`` (hidden files and sidecars skipped)."""
    if not pred_dir.is_dir():
        raise SegkitError("prediction folder not found", pred_dir)
    found = []
    endings = supported_endings()
    for p in sorted(pred_dir.iterdir()):
        ending = next((e for e in endings if p.name.lower().endswith(e)), None)
        if p.name.startswith(".") or ending is None or not p.is_file():
            continue
        found.append((p.name[: -len(ending)], p))
    if not found:
        raise SegkitError("holds no prediction images (<case>.nii.gz ...)", pred_dir)
    return found


def describe_folder(folder: Path, limit: int = 6) -> str:
    """A short 'found' description for layout errors."""
    if not folder.exists():
        return "nothing (the folder does not exist)"
    if not folder.is_dir():
        return "a file, not a folder"
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir() if not p.name.startswith("."))
    if not names:
        return "an empty folder"
    more = f" ... ({len(names)} entries)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def nonhidden(paths) -> list[Path]:
    """Drop macOS ``._*`` resource forks and other hidden files that ship inside archives."""
    return sorted(p for p in paths if not p.name.startswith("."))


# -- configuration ------------------------------------------------------------------------------

def load_config(name: str, overrides: dict[str, Any] | None = None,
                facts: tuple[str, ...] = FACT_KEYS) -> dict[str, Any]:
    """Read ``challenges/<name>.yaml`` (safe_load), check its ``sources:``, apply dotted-key overrides."""
    path = Path(__file__).with_name(f"{name}.yaml")
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise SegkitError(f"malformed YAML ({str(exc).splitlines()[0]})", path) from None
    check_sources(config, facts, path)
    return merge_config(config, overrides or {})


def check_sources(config: dict[str, Any], facts: tuple[str, ...], path: Path) -> None:
    """Every fact in the YAML says where it is stated (``source: URL``) or admits ``unverified: true``.

    Why: a submission name or an exclusion list that only looks authoritative fails silently on the
    real platform; a fact without a source must say so, and ``segkit submission`` warns about it.
    """
    sources = config.get("sources") or {}
    if not isinstance(sources, dict):
        raise SegkitError("'sources' must map each fact to {source: URL} or {unverified: true}", path)
    for key in facts:
        if config.get(key) is None:
            continue
        entry = sources.get(key)
        if not isinstance(entry, dict):
            raise SegkitError(f"fact {key!r} has no 'sources.{key}' entry: give {{source: <where it is "
                              f"stated>}} or {{unverified: true}}", path)
        extra = set(entry) - _SOURCE_KEYS
        has_source = isinstance(entry.get("source"), str) and entry["source"].strip() != ""
        unverified = entry.get("unverified") is True
        if extra or has_source == unverified:
            raise SegkitError(f"'sources.{key}' must hold exactly one of source: <URL> or unverified: true "
                              f"(plus an optional note){f'; unknown keys {sorted(extra)}' if extra else ''}", path)
    for key in sources:
        if key not in facts:
            raise SegkitError(f"'sources.{key}' names no fact of this adapter (facts: {', '.join(facts)})", path)


def unverified_facts(config: dict[str, Any]) -> list[tuple[str, str]]:
    """``(key, line)`` per fact marked ``unverified: true`` (the line names it and its note), for warnings."""
    lines = []
    for key, entry in (config.get("sources") or {}).items():
        if isinstance(entry, dict) and entry.get("unverified") is True:
            note = entry.get("note")
            lines.append((key, f"{key} is unverified" + (f" ({note})" if note else "")))
    return lines


def merge_config(config: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Return ``config`` with ``{"a.b": value}`` or nested-dict overrides applied (input untouched)."""
    result = copy.deepcopy(config)
    for key, value in overrides.items():
        parts = str(key).split(".")
        node = result
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise SegkitError(f"option {key!r}: {part!r} is not a section")
        node[parts[-1]] = value
    return result


def parse_options(options: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """``["labels={background: 0, liver: 1}", "names.team=abc"]`` -> dict.

    Values are parsed as YAML; one that is not valid YAML (``{case}_seg.nii.gz``) is kept as text.
    """
    parsed: dict[str, Any] = {}
    for opt in options:
        key, sep, value = opt.partition("=")
        if not sep or not key.strip():
            raise SegkitError(f"option {opt!r} must look like KEY=VALUE")
        try:
            parsed[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            parsed[key.strip()] = value
    return parsed
