"""PROMISE12 (prostate MRI): ``CaseXX.mhd/.raw`` + ``CaseXX_segmentation.mhd/.raw``; submission in .mhd/.raw.

The download spreads training cases over ``TrainingData_Part1..3`` and the test cases over
``TestData``; a ``CaseXX.mhd`` with a ``_segmentation`` sibling is a training case, one without is a
test case (canonical id ``test_CaseXX``, since the test set reuses the names).
Submissions are written as uncompressed MetaImage named like the test image, ``CaseXX.mhd`` + ``.raw``
(as nnU-Net's PROMISE12 export, ``Task024_Promise2012.py``, names them).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from challenges.base import Adapter, RawCase, Volume, nonhidden, prediction_files
from toolkit.io.images import read_image

_CASE = re.compile(r"Case\d{2}\.mhd")


class PROMISE12(Adapter):
    name = "promise12"
    summary = "PROMISE12 prostate MRI (CaseXX.mhd/.raw + CaseXX_segmentation.mhd)"

    def _images(self, raw: Path) -> list[Path]:
        return nonhidden(p for p in raw.rglob("Case*.mhd") if _CASE.fullmatch(p.name))

    def check_layout(self, raw: Path) -> None:
        found = self._images(raw)
        self.expect(any(p.with_name(p.stem + "_segmentation.mhd").is_file() for p in found), raw,
                    "CaseXX.mhd (+ .raw) with CaseXX_segmentation.mhd beside it (any sub-folder)")

    def discover(self, raw: Path) -> Iterator[RawCase]:
        for image in self._images(raw):
            label = image.with_name(image.stem + "_segmentation.mhd")
            if label.is_file():
                yield RawCase(image.stem, (Volume(image),), Volume(label))
            else:  # test cases reuse the training names Case00.., hence the prefix
                yield RawCase(f"test_{image.stem}", (Volume(image),))

    def write_submission(self, pred_dir: Path, out_dir: Path) -> list[Path]:
        import SimpleITK as sitk

        written = []
        for case_id, path in prediction_files(pred_dir):
            array, geometry = read_image(path)
            img = sitk.GetImageFromArray(array)
            img.SetSpacing(geometry.spacing_xyz)
            img.SetOrigin(geometry.origin_xyz)
            img.SetDirection(geometry.direction)
            target = out_dir / self.submission_name(case_id)
            target.parent.mkdir(parents=True, exist_ok=True)
            sitk.WriteImage(img, str(target), useCompression=False)  # .mhd + .raw, as the challenge wants
            written += [target, target.with_suffix(".raw")]
        return written
