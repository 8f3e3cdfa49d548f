"""One configuration's fold ensemble: raw images -> preprocessing -> sliding window per fold -> mean
probabilities -> geometry-exact export.

The three steps are separate methods (:meth:`Predictor.preprocess`, :meth:`Predictor.predict`,
:meth:`Predictor.export`) so that :func:`toolkit.inference.pipeline.predict_folder` can run them in
overlapping workers. A bundle of several configurations (selection issue) plugs into the same pipeline
by offering the same three methods (see :class:`toolkit.inference.pipeline.CasePredictor`).

Label model (:class:`toolkit.dataset.labels.LabelSpec` of the model's ``dataset.json``): one output per
class (softmax) or per foreground region (sigmoid). Each fold's sliding window averages logits, the fold
ensemble averages the folds' logits, and the nonlinearity is applied once to that mean, as nnU-Net v2's
predictor does (it applies it after resampling to the original grid; here it is applied on the
preprocessed grid so that the export resamples probabilities slab by slab, see docs/method.md 2).

Cascade: when the configuration has ``previous_stage``, the predictor of that stage (the sibling model
folder, same folds and settings) runs first on its own preprocessing of the same images, and its label
map enters as one-hot extra channels (:func:`toolkit.inference.cascade.previous_stage_onehot`).

Mirror axes: the checkpoint's ``options["mirror_axes"]`` when the trainer recorded them, else every
spatial axis of the patch (the method's augmentation mirrors along every axis).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from toolkit.errors import SegkitError
from toolkit.inference.cascade import previous_stage_onehot
from toolkit.inference.model_folder import ModelFolder, load_model_folder, load_network, resolve_device
from toolkit.inference.sliding_window import apply_nonlinearity, sliding_window_predict
from toolkit.precision import check_precision


@dataclass
class PreprocessedCase:
    """A case ready for the network: data (c, z, y, x) float32 at the plan's spacing + properties."""

    case_id: str
    data: np.ndarray
    properties: dict[str, Any]
    previous: PreprocessedCase | None = None  # the low-res stage's own preprocessing (cascade)


class Predictor:
    """Fold networks of one configuration with its inference settings."""

    def __init__(self, model: ModelFolder, networks: list[torch.nn.Module], device: str, tta: bool = True,
                 step: float = 0.5, mirror_axes: tuple[int, ...] | None = None, num_classes: int | None = None,
                 previous: Predictor | None = None, precision: str = "auto") -> None:
        if not networks:
            raise ValueError("a predictor needs at least one network")
        self.model = model
        self.networks = networks
        self.device = device
        self.tta = tta
        self.step = step
        self.previous = previous
        self.precision = precision  # auto | fp32 | mixed, resolved per device by sliding_window_predict
        self.label_spec = model.label_spec
        self.num_classes = num_classes if num_classes is not None else self.label_spec.num_outputs
        patch = self.patch_size
        self.mirror_axes = tuple(range(len(patch))) if mirror_axes is None else tuple(mirror_axes)

    @classmethod
    def from_model_folder(cls, folder: str | Path, folds: list[int | str] | None = None, device: str | None = "auto",
                          tta: bool = True, step: float = 0.5, precision: str = "auto") -> Predictor:
        """Load the folds' final checkpoints (and the previous stage's, for a cascade)."""
        if not 0 < step <= 1:
            raise SegkitError(f"step must be in (0, 1], got {step}", "--step")
        check_precision(precision)  # a bad value is an error before any model loads
        model = load_model_folder(folder, folds)
        dev = resolve_device(device)
        networks, options, spec = [], {}, None
        for k in model.folds:
            net, options, spec = load_network(model.checkpoint(k), dev)
            networks.append(net)
        labels = model.label_spec
        expected_in = model.num_image_channels + (len(labels.all_labels) if model.previous_stage else 0)
        if spec is not None and spec.in_channels != expected_in:
            raise SegkitError(f"network expects {spec.in_channels} input channels but dataset.json and the "
                              f"configuration imply {expected_in}", model.checkpoint(model.folds[0]))
        if spec is not None and spec.num_classes != labels.num_outputs:
            kind = "regions" if labels.has_regions else "classes (background included)"
            raise SegkitError(f"network has {spec.num_classes} outputs but dataset.json declares "
                              f"{labels.num_outputs} {kind}", model.checkpoint(model.folds[0]))
        previous = None
        if model.previous_stage:
            previous = cls.from_model_folder(model.root.parent / model.previous_stage, list(model.folds),
                                             dev, tta, step, precision)
        mirror = options.get("mirror_axes")
        return cls(model, networks, dev, tta, step, tuple(mirror) if mirror is not None else None,
                   spec.num_classes if spec is not None else None, previous, precision)

    @property
    def patch_size(self) -> tuple[int, ...]:
        return tuple(int(p) for p in self.model.plan["patch_size"])

    @property
    def file_ending(self) -> str:
        return self.model.file_ending

    def preprocess(self, case_id: str, image_paths: list[Path]) -> PreprocessedCase:
        """Raw channel files -> data at the plan's spacing, exactly as training preprocessing did."""
        from toolkit.preprocessing.preprocess import preprocess_case

        data, _, props = preprocess_case(list(image_paths), None, self.model.plans, self.model.config)
        prev = self.previous.preprocess(case_id, image_paths) if self.previous is not None else None
        return PreprocessedCase(case_id, np.asarray(data, dtype=np.float32), props, prev)

    def predict_data(self, data: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Softmax (classes) or sigmoid (regions) of the folds' mean sliding-window logits,
        (C, z, y, x) float32 on the accumulation device."""
        mirror = self.mirror_axes if self.tta else None
        total: torch.Tensor | None = None
        with torch.inference_mode():
            for net in self.networks:
                logits = sliding_window_predict(net, data, self.patch_size, self.num_classes, self.step, mirror,
                                                self.device, precision=self.precision, nonlinearity=None)
                if total is not None and logits.device != total.device:  # an OOM fallback moved one to CPU
                    total, logits = total.cpu(), logits.cpu()
                total = logits if total is None else total.add_(logits)
            assert total is not None
            if len(self.networks) > 1:
                total.div_(len(self.networks))
            return apply_nonlinearity(total, self.label_spec.nonlinearity)

    def predict(self, case: PreprocessedCase) -> torch.Tensor:
        """Probabilities of a preprocessed case (runs the previous stage first for a cascade)."""
        data: np.ndarray | torch.Tensor = case.data
        if self.previous is not None:
            if case.previous is None:
                raise ValueError(f"cascade case {case.case_id} lacks the previous stage's preprocessing")
            low = self.previous.predict(case.previous)
            onehot = previous_stage_onehot(low, case.data.shape[1:], self.previous.label_spec)
            data = torch.cat([torch.from_numpy(case.data).to(onehot.device), onehot], dim=0)
        return self.predict_data(data)

    def export(self, probabilities: torch.Tensor | np.ndarray, case: PreprocessedCase, out_path: Path,
               save_probabilities: bool = False,
               postprocess: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        """Back to the input's grid and geometry; atomic write (``.npz`` probabilities beside if asked).

        ``postprocess`` maps the label volume before it is written (a bundle's postprocessing).
        """
        from toolkit.preprocessing.export import export_prediction

        # torch tensors go as they are: the export resamples them with torch, on the GPU if they live there
        export_prediction(probabilities, case.properties, self.model.plans, self.model.config, Path(out_path),
                          self.file_ending, save_probabilities=save_probabilities, labels=self.label_spec,
                          postprocess=postprocess)

    def predict_case(self, image_paths: list[Path], case_id: str = "case") -> tuple[np.ndarray, dict[str, Any]]:
        """Entry point of docs/interfaces.md "Python API": probabilities (K, z, y, x) at the plan's spacing + properties."""
        case = self.preprocess(case_id, image_paths)
        return self.predict(case).float().cpu().numpy(), case.properties
