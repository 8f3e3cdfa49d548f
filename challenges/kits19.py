"""KiTS19 (kidney and kidney tumour, CT): ``data/case_XXXXX/{imaging,segmentation}.nii.gz``.

KiTS19 stores volumes with the slice axis first in the NIfTI array and an affine that swaps axes
(SimpleITK direction ``[0,0,1; 0,1,0; -1,0,0]``). Nothing here reorients: files are copied byte for
byte, so that convention reaches the engine and, through the predictions written with the image's
own geometry, the submission unchanged. Cases without ``segmentation.nii.gz`` (210-299) are test
cases. Exclusions depend on the label release (YAML ``label_release``, ``exclude``): none for the
repository's labels since the December 2019 corrections (the default), the nnU-Net paper's four for the
April 2019 labels it used. Optional label replacements (``replace``) apply.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from challenges.base import Adapter, RawCase, Volume, nonhidden
from toolkit.errors import SegkitError

_CASE = re.compile(r"case_\d{5}")


class KiTS19(Adapter):
    name = "kits19"
    summary = "KiTS19 kidney tumour CT (data/case_XXXXX/imaging.nii.gz + segmentation.nii.gz)"

    def _data(self, raw: Path) -> Path:
        return raw / "data" if (raw / "data").is_dir() and not any(raw.glob("case_*")) else raw

    def check_layout(self, raw: Path) -> None:
        data = self._data(raw)
        cases = [p for p in data.glob("case_*") if p.is_dir() and _CASE.fullmatch(p.name)]
        self.expect(bool(cases) and any((p / "imaging.nii.gz").is_file() for p in cases), raw,
                    "case_XXXXX/ folders (in RAW or RAW/data) holding imaging.nii.gz")

    def discover(self, raw: Path) -> Iterator[RawCase]:
        data = self._data(raw)
        excluded = set(self.excluded())
        replace = self.config.get("replace") or {}
        for folder in nonhidden(p for p in data.glob("case_*") if _CASE.fullmatch(p.name)):
            image = folder / "imaging.nii.gz"
            if folder.name in excluded or not image.is_file():
                continue
            label = folder / "segmentation.nii.gz"
            if folder.name in replace:
                label = raw / replace[folder.name]
            yield RawCase(folder.name, (Volume(image),), Volume(label) if label.is_file() else None)

    def excluded(self) -> list[str]:
        """The training cases to leave out: a list as given, or the list of the YAML's ``label_release``."""
        exclude = self.config.get("exclude") or []
        if isinstance(exclude, dict):
            release = str(self.config.get("label_release"))
            if release not in exclude:
                raise SegkitError(f"unknown KiTS19 label_release {release!r} (known: {', '.join(map(str, exclude))})")
            exclude = exclude[release] or []
        return [str(c) for c in exclude]
