"""LiTS (liver tumour CT): ``volume-N.nii`` + ``segmentation-N.nii``; test ``test-volume-N.nii``.

The download spreads the training pairs over ``Training Batch 1`` / ``Training Batch 2`` folders, so
files are found anywhere below RAW. Case ids keep the original stems (``volume-N``,
``test-volume-N``); ``.nii`` is kept as the canonical ending so files are copied byte for byte.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from challenges.base import Adapter, RawCase, Volume, nonhidden
from toolkit.errors import SegkitError

_TRAIN = re.compile(r"volume-(\d+)\.nii")
_TEST = re.compile(r"test-volume-(\d+)\.nii")


class LiTS(Adapter):
    name = "lits"
    summary = "LiTS liver tumour CT (volume-N.nii + segmentation-N.nii, test-volume-N.nii)"

    def check_layout(self, raw: Path) -> None:
        self.expect(any(_TRAIN.fullmatch(p.name) for p in raw.rglob("volume-*.nii")), raw,
                    "volume-N.nii files with segmentation-N.nii beside them (any sub-folder)")

    def discover(self, raw: Path) -> Iterator[RawCase]:
        for image in nonhidden(raw.rglob("*volume-*.nii")):
            if m := _TEST.fullmatch(image.name):
                yield RawCase(f"test-volume-{m[1]}", (Volume(image),))
            elif m := _TRAIN.fullmatch(image.name):
                label = image.with_name(f"segmentation-{m[1]}.nii")
                if not label.is_file():
                    raise SegkitError(f"training volume without {label.name} beside it", image)
                yield RawCase(f"volume-{m[1]}", (Volume(image),), Volume(label))
