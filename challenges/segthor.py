"""SegTHOR (thoracic organs at risk, CT): ``train/Patient_XX/{Patient_XX,GT}.nii.gz``; test ``Patient_XX.nii.gz``."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from challenges.base import Adapter, RawCase, Volume, nonhidden
from toolkit.errors import SegkitError

_PATIENT = re.compile(r"Patient_\d{2}")


class SegTHOR(Adapter):
    name = "segthor"
    summary = "SegTHOR thoracic organs CT (train/Patient_XX/Patient_XX.nii.gz + GT.nii.gz, test/)"

    def check_layout(self, raw: Path) -> None:
        self.expect(any(_PATIENT.fullmatch(p.name) for p in (raw / "train").glob("Patient_*")), raw,
                    "train/Patient_XX/ folders (and optionally test/Patient_XX.nii.gz)")

    def discover(self, raw: Path) -> Iterator[RawCase]:
        for folder in nonhidden((raw / "train").glob("Patient_*")):
            if not _PATIENT.fullmatch(folder.name):
                continue
            image, label = folder / f"{folder.name}.nii.gz", folder / "GT.nii.gz"
            if not (image.is_file() and label.is_file()):
                raise SegkitError(f"expected {image.name} and GT.nii.gz", folder)
            yield RawCase(folder.name, (Volume(image),), Volume(label))
        for image in nonhidden((raw / "test").glob("Patient_*.nii.gz")):
            yield RawCase(image.name[: -len(".nii.gz")], (Volume(image),))
