"""PROMISE12 (prostate MRI): ``CaseXX.mhd/.raw`` + ``CaseXX_segmentation.mhd/.raw``; submission in .mhd/.raw.

The download spreads training cases over ``TrainingData_Part1..3`` and the test cases over
``TestData``. Training and test cases are told apart by that folder (``TrainingData*`` or ``TestData*`` above
the image; RAW itself may be one of them), never by whether a ``_segmentation`` file lies beside the image:
a re-release that ships test labels must not turn test cases into training cases. A training case without
its ``_segmentation`` is an error. Test cases get the canonical id ``test_CaseXX``, since the test set reuses
the names.
Submissions are written as uncompressed MetaImage named like the test image, ``CaseXX.mhd`` + ``.raw``
(as nnU-Net's PROMISE12 export, ``Task024_Promise2012.py``, names them).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from challenges.base import Adapter, RawCase, Volume, nonhidden, prediction_files
from toolkit.errors import SegkitError
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
            if not _is_training(raw, image):  # test cases reuse the training names Case00.., hence the prefix
                yield RawCase(f"test_{image.stem}", (Volume(image),))
                continue
            label = image.with_name(image.stem + "_segmentation.mhd")
            if not label.is_file():
                raise SegkitError(f"training case without its ground truth {label.name}", image)
            yield RawCase(image.stem, (Volume(image),), Volume(label))

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


def _is_training(raw: Path, image: Path) -> bool:
    """``TrainingData*`` or ``TestData*`` among the folders from RAW (included) down to the image."""
    names = [part.lower() for part in (raw.name, *image.relative_to(raw).parts[:-1])]
    if any(n.startswith("testdata") for n in names):
        return False
    if any(n.startswith("trainingdata") for n in names):
        return True
    raise SegkitError("cannot tell a training from a test case: expected it under TrainingData_Part*/ or "
                      "TestData/", image)
