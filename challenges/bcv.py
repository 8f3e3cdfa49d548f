"""BCV (Multi-Atlas Labeling Beyond the Cranial Vault, abdomen CT): ``img/imgXXXX.nii.gz`` + ``label/labelXXXX.nii.gz``.

The Synapse download unpacks to ``RawData/{Training,Testing}/{img,label}``; RAW may be that
``RawData`` folder or the one above it. Case ids keep the image stems (``img0001``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from challenges.base import Adapter, RawCase, Volume, nonhidden
from toolkit.errors import SegkitError

_IMG = re.compile(r"img(\d{4})\.nii\.gz")


class BCV(Adapter):
    name = "bcv"
    summary = "Beyond the Cranial Vault abdomen CT, 13 organs (Training/img/imgXXXX.nii.gz + label/)"

    def _base(self, raw: Path) -> Path:
        return raw / "RawData" if (raw / "RawData").is_dir() else raw

    def check_layout(self, raw: Path) -> None:
        base = self._base(raw)
        self.expect((base / "Training" / "img").is_dir() and (base / "Training" / "label").is_dir(), raw,
                    "Training/img/ and Training/label/ (in RAW or RAW/RawData)")

    def discover(self, raw: Path) -> Iterator[RawCase]:
        base = self._base(raw)
        for image in nonhidden((base / "Training" / "img").glob("img*.nii.gz")):
            m = _IMG.fullmatch(image.name)
            label = base / "Training" / "label" / f"label{m[1]}.nii.gz" if m else None
            if label is None or not label.is_file():
                raise SegkitError(f"expected a labelXXXX.nii.gz in Training/label for {image.name}", image)
            yield RawCase(f"img{m[1]}", (Volume(image),), Volume(label))
        for folder in ("Testing", "Test"):
            for image in nonhidden((base / folder / "img").glob("img*.nii.gz")):
                if m := _IMG.fullmatch(image.name):
                    yield RawCase(f"img{m[1]}", (Volume(image),))
