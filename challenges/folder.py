"""The generic adapter for a new public dataset: image and label folders paired by file-name patterns.

Everything is options (``-O key=value`` or ``--config my.yaml``): the folders, two regular
expressions (``image_pattern`` with a ``case`` and optionally a ``channel`` group, ``label_pattern``
with a ``case`` group), an optional ``group_pattern`` giving the patient of a case id, and the
dataset's ``channel_names`` and ``labels``. A channel group may hold a number (``_0001``) or a name
listed in ``channel_keys`` (``_t2``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from challenges.base import Adapter, RawCase, Volume, nonhidden
from toolkit.errors import SegkitError


class Folder(Adapter):
    name = "folder"
    summary = "generic: images/ + labels/ paired by file-name patterns; names and labels from options"

    def check_layout(self, raw: Path) -> None:
        images = raw / self.config["image_dir"]
        self.expect(images.is_dir() and (raw / self.config["label_dir"]).is_dir(), raw,
                    f"{self.config['image_dir']}/ and {self.config['label_dir']}/ folders (set -O image_dir=... "
                    f"-O label_dir=...)")
        if not self.config.get("channel_names") or not self.config.get("labels"):
            raise SegkitError("the folder adapter needs channel_names and labels, e.g. -O channel_names=[CT] "
                              "-O 'labels={background: 0, tumour: 1}'")

    def discover(self, raw: Path) -> Iterator[RawCase]:
        labels = self._by_case(raw / self.config["label_dir"], self.config["label_pattern"])
        train = self._images(raw / self.config["image_dir"])
        for case_id, images in train.items():
            label = labels.get(case_id)
            if label is None:
                raise SegkitError(f"no label file matches case {case_id!r}", raw / self.config["label_dir"])
            yield RawCase(case_id, images, Volume(label), self._group(case_id))
        orphans = sorted(set(labels) - set(train))
        if orphans:
            raise SegkitError(f"label(s) without image: {', '.join(orphans[:5])}", raw / self.config["label_dir"])
        test_dir = self.config.get("test_dir")
        if test_dir and (raw / test_dir).is_dir():
            for case_id, images in self._images(raw / test_dir).items():
                yield RawCase(case_id, images)

    def _images(self, folder: Path) -> dict[str, tuple[Volume, ...]]:
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
            found.setdefault(m["case"], {})[channel] = path
        cases = {}
        for case_id, channels in sorted(found.items()):
            if sorted(channels) != list(range(n)):
                raise SegkitError(f"case {case_id!r} has channels {sorted(channels)}, expected 0..{n - 1}", folder)
            cases[case_id] = tuple(Volume(channels[c]) for c in range(n))
        return cases

    def _by_case(self, folder: Path, pattern: str) -> dict[str, Path]:
        regex = re.compile(pattern)
        return {m["case"]: p for p in nonhidden(folder.iterdir()) if (m := regex.fullmatch(p.name))}

    def _group(self, case_id: str) -> str | None:
        pattern = self.config.get("group_pattern")
        m = re.fullmatch(pattern, case_id) if pattern else None
        return m["group"] if m else None
