"""ISBI 2015 longitudinal MS lesion challenge: four modalities per time point, two expert masks.

Layout: ``training/trainingXX/preprocessed/trainingXX_TT_{flair,mprage,pd,t2}_pp.nii`` and
``training/trainingXX/masks/trainingXX_TT_mask{1,2}.nii``; test patients under
``testdata_website/testXX/preprocessed``. As in the paper, each expert mask makes its own training
case sharing the image (``trainingXX_TT_mask1``, ``..._mask2``); all time points and both
annotations of a patient form one group so they never straddle folds.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from challenges.base import Adapter, RawCase, Volume, nonhidden
from toolkit.errors import SegkitError

_TIMEPOINT = re.compile(r"(?P<patient>(training|test)\d{2})_(?P<time>\d{2})_flair_pp\.nii")


class MSLesions(Adapter):
    name = "msles"
    summary = "ISBI 2015 MS lesions (trainingXX/preprocessed/*_pp.nii, masks/*_mask1/2.nii)"

    def _flairs(self, raw: Path) -> list[Path]:
        return nonhidden(p for p in raw.glob("*/*/preprocessed/*_flair_pp.nii") if _TIMEPOINT.fullmatch(p.name))

    def check_layout(self, raw: Path) -> None:
        self.expect(any(p.name.startswith("training") for p in self._flairs(raw)), raw,
                    "training/trainingXX/preprocessed/trainingXX_TT_flair_pp.nii (+ mprage, pd, t2) and masks/")

    def discover(self, raw: Path) -> Iterator[RawCase]:
        modalities = [m.lower() for m in self.config["modality_files"]]
        for flair in self._flairs(raw):
            m = _TIMEPOINT.fullmatch(flair.name)
            stem = f"{m['patient']}_{m['time']}"
            images = tuple(Volume(flair.with_name(f"{stem}_{mod}_pp.nii")) for mod in modalities)
            missing = [v.path.name for v in images if not v.path.is_file()]
            if missing:
                raise SegkitError(f"time point {stem} lacks {', '.join(missing)}", flair.parent)
            masks = [flair.parent.parent / "masks" / f"{stem}_mask{k}.nii" for k in (1, 2)]
            if m["patient"].startswith("test"):
                yield RawCase(stem, images)
                continue
            for k, mask in enumerate(masks, start=1):
                if mask.is_file():
                    yield RawCase(f"{stem}_mask{k}", images, Volume(mask), group=m["patient"])
