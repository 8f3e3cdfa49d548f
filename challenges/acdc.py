"""ACDC (cardiac cine MRI): ``patientXXX/patientXXX_frameYY.nii.gz`` + ``_gt`` and ``Info.cfg``.

The ED and ES frame numbers come from each patient's ``Info.cfg``; the two frames become the cases
``patientXXX_ED`` and ``patientXXX_ES`` (grouped by patient), which is also the submission naming,
so the submission is a plain rename-free copy.

Training and test patients are told apart by their folder, ``training/`` or ``testing/`` (as the
download ships them and nnU-Net's ``Task027_AutomaticCardiacDetectionChallenge.py`` reads them), never
by the presence of ``_gt`` files: a re-release that ships the test labels must not turn test patients
into training cases. A training patient without its ``_gt`` files is an error.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from challenges.base import Adapter, RawCase, Volume, nonhidden
from toolkit.errors import SegkitError

_PATIENT = re.compile(r"patient\d{3}")


class ACDC(Adapter):
    name = "acdc"
    summary = "ACDC cardiac MRI (patientXXX/patientXXX_frameYY.nii.gz + _gt, Info.cfg ED/ES)"

    def _patients(self, raw: Path) -> list[Path]:
        cfgs = [p for depth in ("*", "*/*", "*/*/*") for p in raw.glob(f"{depth}/Info.cfg")]
        return nonhidden(p.parent for p in cfgs if _PATIENT.fullmatch(p.parent.name))

    def check_layout(self, raw: Path) -> None:
        self.expect(bool(self._patients(raw)), raw,
                    "patientXXX/ folders with Info.cfg (in RAW, RAW/training or RAW/testing)")

    def discover(self, raw: Path) -> Iterator[RawCase]:
        for folder in self._patients(raw):
            training = _is_training(raw, folder)
            phases = read_info_cfg(folder / "Info.cfg")
            for phase in ("ED", "ES"):
                stem = f"{folder.name}_frame{phases[phase]:02d}"
                image, label = folder / f"{stem}.nii.gz", folder / f"{stem}_gt.nii.gz"
                if not image.is_file():
                    raise SegkitError(f"Info.cfg names {phase} frame {phases[phase]} but {image.name} is missing",
                                      folder)
                if training and not label.is_file():
                    raise SegkitError(f"training patient without its ground truth {label.name}", folder)
                yield RawCase(f"{folder.name}_{phase}", (Volume(image),),
                              Volume(label) if training else None, group=folder.name)


def _is_training(raw: Path, folder: Path) -> bool:
    """``training/`` or ``testing/`` above the patient folder (RAW itself may be one of them)."""
    names = {part.lower() for part in (raw.name, *folder.relative_to(raw).parts[:-1])}
    if "testing" in names:
        return False
    if "training" in names:
        return True
    raise SegkitError("cannot tell a training from a test patient: expected it under training/ or testing/, "
                      "as the ACDC download ships them", folder)


def read_info_cfg(path: Path) -> dict[str, int]:
    """``ED: 1`` / ``ES: 12`` lines of an ACDC Info.cfg -> {"ED": 1, "ES": 12}."""
    values = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        key, _, value = line.partition(":")
        values[key.strip()] = value.strip()
    try:
        return {k: int(float(values[k])) for k in ("ED", "ES")}
    except (KeyError, ValueError):
        raise SegkitError("expected 'ED: <frame>' and 'ES: <frame>' lines", path) from None
