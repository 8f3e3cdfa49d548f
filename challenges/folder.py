"""The generic adapter for a new public dataset, described declaratively by options.

Everything is options (``-O key=value`` or ``--config my.yaml``; every key is listed in
challenges/README.md and docs/interfaces.md "The folder adapter"). Three layouts:

* flat (the default): ``image_dir`` and ``label_dir`` hold the files, paired by two regular expressions
  (``image_pattern`` with a ``case`` and optionally a ``channel`` group, ``label_pattern`` with a
  ``case`` group); a channel group holds a number (``_0001``) or a name listed in ``channel_keys``.
  Alternatively ``channel_files`` (one glob per channel with ``{case}``) finds the cases.
* ``case_dirs: true`` (BraTS style): every sub-folder of ``image_dir`` is one case named after the
  folder; ``channel_files`` gives one glob per channel inside it and ``label_file`` the label.
* one mask file per structure (TotalSegmentator style): ``structures: {liver: 1, spleen: 2}`` plus
  ``structure_files: segmentations/{structure}.nii.gz`` replace the label file; they are merged into
  one label map, overlaps being an error unless ``structure_priority`` says who wins.

PNG/TIFF/JPEG files (ISBI EM style) work in every layout: ``spacing`` gives their physical spacing,
``label_values`` maps their grey values to labels, and they are written as 2D NIfTI, the engine's
2D convention. An optional ``group_pattern`` gives the patient of a case id.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from challenges.base import Adapter, RawCase, Volume, nonhidden
from challenges.folder_volumes import check_ending, is_plain, load_label, load_plain_image, merge_structures
from toolkit.errors import SegkitError


class Folder(Adapter):
    name = "folder"
    summary = ("generic: flat images/ + labels/, one folder per case, one mask per structure, or PNG/TIFF sets; "
               "all from options")

    # -- layout ---------------------------------------------------------------------------------------
    def check_layout(self, raw: Path) -> None:
        config = self.config
        if not config.get("channel_names") or not (config.get("labels") or config.get("structures")):
            raise SegkitError("the folder adapter needs channel_names and labels (or structures), e.g. "
                              "-O channel_names=[CT] -O 'labels={background: 0, tumour: 1}'")
        self._check_options()
        for folder in self._dirs("image_dir"):
            self.expect((raw / folder).is_dir(), raw, f"the image folder {folder}/ (set -O image_dir=...)")
        if not config.get("case_dirs"):
            self.expect((raw / config["label_dir"]).is_dir(), raw,
                        f"the label folder {config['label_dir']}/ (set -O label_dir=...)")

    def _check_options(self) -> None:
        config, n = self.config, len(self.config["channel_names"])
        files = config.get("channel_files")
        if config.get("case_dirs") and not files:
            raise SegkitError("case_dirs: true needs channel_files, one file pattern per channel inside a case "
                              "folder, e.g. -O 'channel_files=[\"{case}_flair.nii.gz\"]'")
        if files and len(files) not in (1, n):
            raise SegkitError(f"channel_files has {len(files)} patterns but channel_names {n} names")
        structures = config.get("structures")
        if structures:
            if "{structure}" not in str(config.get("structure_files") or ""):
                raise SegkitError("structures need structure_files, a pattern with {structure}, e.g. "
                                  "segmentations/{structure}.nii.gz")
            if not isinstance(structures, dict) or not all(_positive_int(v) for v in structures.values()):
                raise SegkitError(f"structures must map each structure to a label value > 0, got {structures!r}")
            unknown = [s for s in config.get("structure_priority") or [] if s not in structures]
            if unknown:
                raise SegkitError(f"structure_priority names {unknown} which are not in structures")

    def metadata(self, raw: Path) -> dict[str, Any]:
        """The YAML keys; ``labels`` default to background plus the ``structures`` table."""
        meta = super().metadata(raw)
        structures = self.config.get("structures")
        if structures and not meta.get("labels"):
            values = list(structures.values())
            shared = sorted({v for v in values if values.count(v) > 1})
            if shared:
                raise SegkitError(f"several structures share label value(s) {shared}; name the merged labels "
                                  f"with -O 'labels={{background: 0, ...}}'")
            meta["labels"] = {"background": 0, **{str(k): int(v) for k, v in structures.items()}}
        return meta

    # -- cases ----------------------------------------------------------------------------------------
    def discover(self, raw: Path) -> Iterator[RawCase]:
        found = False
        for folder in self._dirs("image_dir"):
            for case_id, images, where, label in self._cases(raw / folder, raw, labelled=True):
                found = True
                yield RawCase(case_id, images, self._label(case_id, where, label, images), self._group(case_id))
        if not found:
            raise SegkitError(f"no training case found: {self._searched()}", raw)
        for folder in self._dirs("test_dir"):
            if (raw / folder).is_dir():
                for case_id, images, _, _ in self._cases(raw / folder, raw, labelled=False):
                    yield RawCase(case_id, images)

    def _cases(self, folder: Path, raw: Path, labelled: bool) -> Iterator[tuple[str, tuple[Volume, ...], Path,
                                                                                Path | None]]:
        """(case id, channels, folder its labels are looked up in, its label_pattern file) per case."""
        if self.config.get("case_dirs"):
            for case_dir in nonhidden(p for p in folder.iterdir() if p.is_dir()):
                files = [find_one(case_dir, _fill(t, case_dir.name), "channel")
                         for t in self.config["channel_files"]]
                yield case_dir.name, self._channels(files, case_dir), case_dir, None
            return
        label_dir = raw / self.config["label_dir"]
        cases = self._flat_by_files(folder) if self.config.get("channel_files") else self._flat_by_regex(folder)
        labels: dict[str, Path] = {}
        if labelled and not self.config.get("structures") and not self.config.get("label_file"):
            labels = self._by_case(label_dir, self.config["label_pattern"])
            orphans = sorted(set(labels) - set(cases))
            if orphans:
                raise SegkitError(f"label(s) without image: {', '.join(orphans[:5])}", label_dir)
            for case_id in cases:
                if case_id not in labels:
                    raise SegkitError(f"no label file matches case {case_id!r} (label_pattern "
                                      f"{self.config['label_pattern']!r})", label_dir)
        for case_id, files in cases.items():
            yield case_id, self._channels(files, folder), label_dir, labels.get(case_id)

    def _flat_by_regex(self, folder: Path) -> dict[str, list[Path]]:
        pattern = re.compile(self.config["image_pattern"])
        keys = [str(k) for k in self.config.get("channel_keys") or []]
        n = len(self.config["channel_names"])
        found: dict[str, dict[int, Path]] = {}
        for path in nonhidden(p for p in folder.iterdir() if p.is_file()):
            m = pattern.fullmatch(path.name)
            if m is None:
                continue
            raw_channel = m.groupdict().get("channel")
            if raw_channel is None:
                channel = 0
            elif raw_channel in keys:
                channel = keys.index(raw_channel)
            elif raw_channel.isdigit():
                channel = int(raw_channel)
            else:
                raise SegkitError(f"channel {raw_channel!r} is not in channel_keys {keys}", path)
            other = found.setdefault(m["case"], {}).get(channel)
            if other is not None:
                raise SegkitError(f"{other.name} and {path.name} are both channel {channel} of case {m['case']!r}; "
                                  f"narrow image_pattern", folder)
            found[m["case"]][channel] = path
        cases = {}
        for case_id, channels in sorted(found.items()):
            colours = sorted(channels) == [0] and is_plain(channels[0])  # one RGB file for n channels
            if sorted(channels) != list(range(n)) and not colours:
                raise SegkitError(f"case {case_id!r} has channels {sorted(channels)}, expected 0..{n - 1}", folder)
            cases[case_id] = [channels[c] for c in sorted(channels)]
        return cases

    def _flat_by_files(self, folder: Path) -> dict[str, list[Path]]:
        """Cases are what ``{case}`` matches in the first channel's pattern; the others are looked up."""
        first, *rest = self.config["channel_files"]
        regex = re.compile(_glob_regex(first))
        cases = {}
        for path in nonhidden(folder.glob(first.replace("{case}", "*"))):
            m = regex.fullmatch(path.relative_to(folder).as_posix())
            if m and path.is_file():
                cases[m["case"]] = [path] + [find_one(folder, _fill(t, m["case"]), "channel") for t in rest]
        return dict(sorted(cases.items()))

    def _channels(self, files: list[Path], where: Path) -> tuple[Volume, ...]:
        """One volume per declared channel: a file per channel, or the colours of one PNG/TIFF/JPEG."""
        n = len(self.config["channel_names"])
        spacing = self.config.get("spacing")
        for path in files:
            check_ending(path)
        if len(files) == 1 and n > 1:
            if not is_plain(files[0]):
                raise SegkitError(f"one image file for {n} channels; colour channels need PNG/TIFF/JPEG", files[0])
            return tuple(Volume(files[0], functools.partial(load_plain_image, files[0], spacing, c, n, None))
                         for c in range(n))
        return tuple(Volume(p, functools.partial(load_plain_image, p, spacing, None, 1, files[0]))
                     if is_plain(p) else Volume(p) for p in files)

    def _label(self, case_id: str, folder: Path, path: Path | None, images: tuple[Volume, ...]) -> Volume:
        config, reference = self.config, images[0].path
        assert reference is not None
        if config.get("structures"):
            return self._structures(case_id, folder, reference)
        if config.get("label_file"):
            path = find_one(folder, _fill(config["label_file"], case_id), "label")
        if path is None:
            raise SegkitError(f"case {case_id!r} has no label: set label_file, label_pattern or structures", folder)
        check_ending(path)
        table = config.get("label_values")
        if table or is_plain(path):
            return Volume(path, functools.partial(load_label, path, config.get("spacing"), table, reference))
        return Volume(path)

    def _structures(self, case_id: str, folder: Path, reference: Path) -> Volume:
        config = self.config
        structures = {str(k): int(v) for k, v in config["structures"].items()}
        masks = {}
        for name in structures:
            pattern = _fill(config["structure_files"], case_id).replace("{structure}", name)
            masks[name] = find_one(folder, pattern, f"structure {name!r}")
            check_ending(masks[name])
        where = masks[next(iter(masks))].parent
        priority = [str(s) for s in config.get("structure_priority") or []]
        return Volume(where, functools.partial(merge_structures, masks, structures, priority, reference,
                                               config.get("spacing"), case_id))

    # -- small helpers --------------------------------------------------------------------------------
    def _dirs(self, key: str) -> list[str]:
        value = self.config.get(key)
        return [] if value is None else [str(v) for v in (value if isinstance(value, list) else [value])]

    def _searched(self) -> str:
        dirs = ", ".join(f"{d}/" for d in self._dirs("image_dir"))
        if self.config.get("case_dirs"):
            return f"no case folder in {dirs} (case_dirs: true looks for <image_dir>/<case>/)"
        if self.config.get("channel_files"):
            return f"no file in {dirs} matches channel_files[0] {self.config['channel_files'][0]!r}"
        return f"no file in {dirs} matches image_pattern {self.config['image_pattern']!r}"

    def _by_case(self, folder: Path, pattern: str) -> dict[str, Path]:
        regex = re.compile(pattern)
        return {m["case"]: p for p in nonhidden(folder.iterdir()) if (m := regex.fullmatch(p.name))}

    def _group(self, case_id: str) -> str | None:
        pattern = self.config.get("group_pattern")
        m = re.fullmatch(pattern, case_id) if pattern else None
        return m["group"] if m else None


def find_one(folder: Path, pattern: str, what: str) -> Path:
    """The single file matching the glob ``pattern`` below ``folder``; none or several is an error."""
    matches = [p for p in nonhidden(folder.glob(pattern)) if p.is_file()]
    if not matches:
        raise SegkitError(f"missing {what} file: nothing matches {pattern!r}", folder)
    if len(matches) > 1:
        names = ", ".join(p.relative_to(folder).as_posix() for p in matches[:3])
        raise SegkitError(f"{what} pattern {pattern!r} matches {len(matches)} files ({names}); it must match one",
                          folder)
    return matches[0]


def _fill(template: str, case_id: str) -> str:
    """Put the case id into a file pattern, escaping glob characters a case id may hold."""
    return str(template).replace("{case}", re.sub(r"([*?\[])", r"[\1]", case_id))


def _glob_regex(template: str) -> str:
    """A regex for a glob pattern holding ``{case}`` (the case group), ``*`` and ``?``."""
    out = []
    for part in re.split(r"(\{case\}|\*|\?)", str(template)):
        out.append({"{case}": "(?P<case>[^/]+?)", "*": "[^/]*", "?": "[^/]"}.get(part, re.escape(part)))
    return "".join(out)


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0
