"""Prediction with a bundle: the selected configurations' fold ensembles, averaged, then postprocessed.

A single-configuration bundle exports slab by slab like a model folder (bounded memory) and applies
the postprocessing to the label map before its one atomic write: a run killed in between leaves no
file, never a raw one that a resumed ``segkit predict`` would skip as finished. An ensemble of two
configurations averages their probabilities on the original grid (each configuration may use another
spacing), which holds one float32 volume per class in memory at a time per configuration; the mean
becomes a label map through the label model (argmax, or regions thresholded at 0.5 painted in
``regions_class_order``), as nnU-Net v2's ensembling.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.bundle.manifest import verify_bundle
from toolkit.dataset.labels import LabelSpec
from toolkit.inference.predictor import Predictor, PreprocessedCase
from toolkit.io.atomic import atomic_write_path, read_json
from toolkit.io.images import Geometry, write_image
from toolkit.postprocessing.rules import apply_postprocessing


@dataclass
class BundleCase:
    case_id: str
    parts: dict[str, PreprocessedCase]


class BundlePredictor:
    """Implements the :class:`toolkit.inference.pipeline.CasePredictor` protocol for a bundle."""

    def __init__(self, root: Path, predictors: dict[str, Predictor], postprocessing: dict[str, Any]) -> None:
        self.root = root
        self.predictors = predictors
        self.postprocessing = postprocessing

    @classmethod
    def from_bundle(cls, root: str | Path, device: str | None = "auto", tta: bool = True, step: float = 0.5,
                    folds: list[int | str] | None = None, precision: str = "auto") -> BundlePredictor:
        """Verify every checksum, then load the selected configurations (previous stages come along)."""
        root = Path(root)
        manifest = verify_bundle(root)
        predictors = {
            config: Predictor.from_model_folder(root / "models" / config, folds or manifest["folds"][config],
                                                device, tta, step, precision)
            for config in manifest["configurations"]
        }
        return cls(root, predictors, read_json(root / "postprocessing.json"))

    @property
    def first(self) -> Predictor:
        return next(iter(self.predictors.values()))

    @property
    def num_image_channels(self) -> int:
        return self.first.model.num_image_channels

    @property
    def label_spec(self) -> LabelSpec:
        return self.first.label_spec

    def preprocess(self, case_id: str, image_paths: list[Path]) -> BundleCase:
        return BundleCase(case_id, {c: p.preprocess(case_id, image_paths) for c, p in self.predictors.items()})

    def predict(self, case: BundleCase) -> dict[str, Any]:
        return {c: self.predictors[c].predict(part) for c, part in case.parts.items()}

    def export(self, probabilities: dict[str, Any], case: BundleCase, out_path: Path,
               save_probabilities: bool = False) -> None:
        if len(self.predictors) == 1:
            config, predictor = next(iter(self.predictors.items()))
            predictor.export(probabilities[config], case.parts[config], out_path, save_probabilities,
                             postprocess=self._postprocess if self._changes_labels() else None)
            return
        self._export_ensemble(probabilities, case, Path(out_path), save_probabilities)

    def _export_ensemble(self, probabilities: dict[str, Any], case: BundleCase, out_path: Path,
                         save_probabilities: bool) -> None:
        from toolkit.preprocessing.export import resample_probabilities_to_original

        mean: np.ndarray | None = None
        for config, probs in probabilities.items():
            predictor, part = self.predictors[config], case.parts[config]
            probs = probs.float().cpu().numpy() if hasattr(probs, "cpu") else np.asarray(probs, np.float32)
            full = resample_probabilities_to_original(probs, part.properties, predictor.model.plans, config,
                                                      labels=self.label_spec)
            mean = full if mean is None else np.add(mean, full, out=mean)
        assert mean is not None
        mean /= len(probabilities)
        seg = apply_postprocessing(self.label_spec.probabilities_to_seg(mean), self.postprocessing)
        ending = self.first.file_ending
        path = out_path if out_path.name.endswith(ending) else out_path.with_name(out_path.name + ending)
        geometry = Geometry.from_json(next(iter(case.parts.values())).properties["geometry"])
        write_image(seg, geometry, path)
        if save_probabilities:
            with atomic_write_path(path.with_name(path.name[: -len(ending)] + ".npz"), suffix=".npz") as tmp:
                np.savez_compressed(tmp, probabilities=mean)

    def _changes_labels(self) -> bool:
        decision = self.postprocessing
        return bool(decision.get("keep_largest_foreground") or decision.get("keep_largest_per_class"))

    def _postprocess(self, seg: np.ndarray) -> np.ndarray:
        return apply_postprocessing(seg, self.postprocessing)
