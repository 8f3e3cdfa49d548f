"""The canonical dataset model: nnU-Net v2's raw format, read exactly.

::

    <DATASET>/dataset.json            channel_names, labels, numTraining, file_ending (+ any extra keys)
    <DATASET>/imagesTr/<case>_<XXXX><ending>
    <DATASET>/labelsTr/<case><ending>
    <DATASET>/imagesTs/<case>_<XXXX><ending>   (optional)
    <DATASET>/groups.json             (optional) {"<case>": "<patient>"}

As in nnU-Net v2, ``dataset.json`` may instead list the files explicitly under a ``dataset`` key
(``{"case": {"images": [...], "label": "..."}}``, paths relative to the dataset folder); such paths
must stay inside the dataset folder.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolkit.dataset.labels import label_spec
from toolkit.errors import SegkitError
from toolkit.io.atomic import read_json
from toolkit.io.images import supported_endings

REQUIRED_KEYS = ("channel_names", "labels", "numTraining", "file_ending")
_CHANNEL_RE = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


@dataclass(frozen=True)
class Case:
    """One case: its id, one image file per channel (ordered), and its label file if any."""

    id: str
    images: tuple[Path, ...]
    label: Path | None = None


@dataclass
class DatasetSpec:
    """What ``dataset.json`` says, validated. ``raw`` keeps every key, extra metadata included."""

    root: Path
    channel_names: dict[str, str]
    labels: dict[str, Any]
    num_training: int
    file_ending: str
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.root.name

    @property
    def num_channels(self) -> int:
        return len(self.channel_names)

    @property
    def label_values(self) -> list[int]:
        """Integer values a label file may hold (regions expand to their member values)."""
        values: set[int] = set()
        for v in self.labels.values():
            values.update(v if isinstance(v, list) else [v])
        return sorted(values)

    @property
    def foreground_labels(self) -> dict[str, int]:
        """Class name -> value for the plain (non-region, non-ignore) foreground classes."""
        return {
            k: v for k, v in self.labels.items() if isinstance(v, int) and v != 0 and k.lower() != "ignore"
        }

    @property
    def num_classes(self) -> int:
        """Number of network outputs: one per label value (softmax) or per foreground region (sigmoid),
        never one for the ignore label (toolkit/dataset/labels.py)."""
        return label_spec(self.labels, self.raw.get("regions_class_order"), self.root / "dataset.json",
                          require_order=False).num_outputs

    @property
    def num_label_keys(self) -> int:
        """Entries of ``labels`` (background, regions and ignore included): the output count nnU-Net v2's
        planner puts into its memory estimate (``len(dataset_json['labels'].keys())``), kept for equal plans."""
        return len(self.labels)

    @property
    def modalities(self) -> list[str]:
        return [self.channel_names[str(i)] for i in range(self.num_channels)]


def load_dataset(root: str | Path) -> DatasetSpec:
    """Load and validate ``<root>/dataset.json``; raises :class:`SegkitError` naming the problem."""
    root = Path(root)
    if not root.is_dir():
        raise SegkitError("dataset folder not found", root)
    path = root / "dataset.json"
    data = read_json(path)
    if not isinstance(data, dict):
        raise SegkitError("dataset.json must hold a JSON object", path)
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise SegkitError(f"missing required key(s): {', '.join(missing)}", path)
    channels = data["channel_names"]
    if not isinstance(channels, dict) or not channels:
        raise SegkitError("channel_names must be a non-empty object {\"0\": \"CT\", ...}", path)
    if sorted(channels, key=lambda k: int(k) if str(k).isdigit() else -1) != [str(i) for i in range(len(channels))]:
        raise SegkitError("channel_names keys must be \"0\", \"1\", ... without gaps", path)
    labels = data["labels"]
    if not isinstance(labels, dict) or labels.get("background") != 0:
        raise SegkitError("labels must be an object with \"background\": 0", path)
    for name, value in labels.items():
        ok = isinstance(value, int) or (isinstance(value, list) and all(isinstance(v, int) for v in value))
        if not ok or isinstance(value, bool):
            raise SegkitError(f"label {name!r} must be an integer or a list of integers", path)
    ending = data["file_ending"]
    if not isinstance(ending, str) or ending.lower() not in supported_endings():
        raise SegkitError(f"file_ending {ending!r} is not supported ({', '.join(supported_endings())})", path)
    num = data["numTraining"]
    if not isinstance(num, int) or isinstance(num, bool) or num < 0:
        raise SegkitError("numTraining must be a non-negative integer", path)
    return DatasetSpec(root, {str(k): str(v) for k, v in channels.items()}, dict(labels), num, ending, data)


def _inside(root: Path, rel: str, where: Path) -> Path:
    candidate = (root / rel).resolve()
    if Path(rel).is_absolute() or not candidate.is_relative_to(root.resolve()):
        raise SegkitError(f"path {rel!r} escapes the dataset folder", where)
    return root / rel


def _explicit_cases(spec: DatasetSpec) -> list[Case]:
    where = spec.root / "dataset.json"
    entries = spec.raw["dataset"]
    if not isinstance(entries, dict):
        raise SegkitError("'dataset' must map case ids to {\"images\": [...], \"label\": ...}", where)
    cases = []
    for case_id, entry in sorted(entries.items()):
        if not isinstance(entry, dict) or not isinstance(entry.get("images"), list):
            raise SegkitError(f"'dataset' entry {case_id!r} needs an 'images' list", where)
        images = tuple(_inside(spec.root, p, where) for p in entry["images"])
        label = _inside(spec.root, entry["label"], where) if entry.get("label") else None
        cases.append(Case(case_id, images, label))
    return cases


def scan_images(folder: Path, ending: str) -> tuple[dict[str, dict[int, Path]], list[Path]]:
    """Group ``<case>_<XXXX><ending>`` files by case; returns (case -> channel -> path, stray files)."""
    by_case: dict[str, dict[int, Path]] = {}
    strays: list[Path] = []
    if not folder.is_dir():
        return by_case, strays
    for p in sorted(folder.iterdir()):
        if p.name.startswith("."):
            continue  # hidden files (macOS ._ junk, editor swap files) are never cases
        m = _CHANNEL_RE.match(p.name[: -len(ending)]) if p.name.endswith(ending) else None
        if m is None:
            strays.append(p)
            continue
        by_case.setdefault(m["case"], {})[int(m["channel"])] = p
    return by_case, strays


def discover_cases(spec: DatasetSpec, split: str = "Tr", require_complete: bool = True) -> list[Case]:
    """List the cases of ``imagesTr`` (``split="Tr"``) or ``imagesTs`` (``"Ts"``), sorted by id.

    With ``require_complete`` a missing channel or (for ``Tr``) a missing label raises; ``verify``
    calls with ``False`` to collect every problem instead of stopping at the first.
    """
    if split == "Tr" and "dataset" in spec.raw:
        return _explicit_cases(spec)
    by_case, _ = scan_images(spec.root / f"images{split}", spec.file_ending)
    cases = []
    for case_id, channels in sorted(by_case.items()):
        images = tuple(channels.get(i, spec.root / f"images{split}" / f"{case_id}_{i:04d}{spec.file_ending}")
                       for i in range(spec.num_channels))
        label = spec.root / "labelsTr" / f"{case_id}{spec.file_ending}" if split == "Tr" else None
        if require_complete:
            for img in images:
                if not img.is_file():
                    raise SegkitError("missing channel file", img)
            if label is not None and not label.is_file():
                raise SegkitError("image has no label file", label)
        cases.append(Case(case_id, images, label))
    return cases


def load_groups(root: str | Path, case_ids: list[str]) -> dict[str, str]:
    """Case -> patient id from ``groups.json``; cases it does not name form their own group."""
    path = Path(root) / "groups.json"
    groups = {c: c for c in case_ids}
    if not path.exists():
        return groups
    data = read_json(path)
    if not isinstance(data, dict) or not all(isinstance(v, (str, int)) for v in data.values()):
        raise SegkitError("groups.json must map case ids to patient ids", path)
    unknown = sorted(set(data) - set(case_ids))
    if unknown:
        raise SegkitError(f"names unknown case(s): {', '.join(unknown[:5])}", path)
    groups.update({k: str(v) for k, v in data.items()})
    return groups
