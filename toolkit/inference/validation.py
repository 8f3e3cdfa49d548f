"""A fold's validation predictions, run by the trainer at the end of training (docs/method.md 1.4).

For every validation case of the fold (``<WORK>/<ds>/splits_final.json``), the fold's network predicts
the preprocessed data with full inference settings (sliding window, step 0.5, mirroring TTA), exports
``fold_<k>/validation/<case><ending>`` and ``<case>.npz`` probabilities in the original geometry, and
``summary.json`` holds per-case metrics per class (or per region, for a region dataset; ignored voxels
excluded) against the raw reference labels (Dice, IoU, counts, volumes; surface metrics are left to the
cross-validation summary to keep the end of training short).

Cascade: a configuration that is another one's ``previous_stage`` also saves each case's probabilities
on its preprocessed grid for the full-res stage (``validation/next_stage/``); a cascade full-res fold
reads the low-res stage's ones as its extra input channels, exactly like its training did.
Already exported cases are not predicted again (resume), unless ``overwrite``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from toolkit.dataset.folds import NO_VALIDATION
from toolkit.errors import SegkitError
from toolkit.evaluation.evaluate import evaluate_spec_cases, evaluation_spec
from toolkit.inference.cascade import load_previous_stage, next_stage_path, save_next_stage
from toolkit.inference.model_folder import CHECKPOINT, ModelFolder, load_network
from toolkit.inference.predictor import Predictor, PreprocessedCase
from toolkit.io.atomic import atomic_write_json, read_json
from toolkit.workdir import WorkDir


def _fold_of(fold_dir: Path) -> int:
    name = fold_dir.name
    if name == "fold_all":
        raise SegkitError(NO_VALIDATION, fold_dir)
    if not name.startswith("fold_") or not name[5:].isdigit():
        raise SegkitError("not a fold folder (expected .../models/<config>/fold_<k>)", fold_dir)
    return int(name[5:])


def _validation_cases(work: WorkDir, fold: int) -> list[str]:
    splits = read_json(work.splits)
    if not isinstance(splits, list) or fold >= len(splits):
        raise SegkitError(f"has no fold {fold}", work.splits)
    return sorted(splits[fold]["val"])


def _reference(dataset_root: Path | None, case_id: str, ending: str, props: dict[str, Any]) -> Path:
    candidates = [dataset_root / "labelsTr" / f"{case_id}{ending}"] if dataset_root is not None else []
    candidates += [Path(props[k]) for k in ("label_file", "label_path") if props.get(k)]
    for c in candidates:
        if c.is_file():
            return c
    raise SegkitError(f"reference label of validation case {case_id!r} not found (pass the dataset folder)",
                      candidates[0] if candidates else None)


def _is_previous_stage(plans: dict[str, Any], config: str) -> bool:
    return any(c.get("previous_stage") == config for c in plans["configurations"].values())


def predict_validation(fold_dir: str | Path, dataset_root: str | Path | None = None,
                       network: torch.nn.Module | None = None, device: str | None = None, tta: bool = True,
                       step: float = 0.5, overwrite: bool = False) -> dict[str, Any]:
    """Predict the fold's validation cases into ``fold_dir/validation`` and write ``summary.json``.

    ``network`` lets the trainer pass its in-memory model (deep supervision is switched off for the
    call and restored after); otherwise ``checkpoint_final.pt`` is loaded. Returns the summary.
    """
    from toolkit.preprocessing.storage import load_case

    fold_dir = Path(fold_dir)
    fold, model_root = _fold_of(fold_dir), fold_dir.parent
    work = WorkDir(model_root.parent.parent)
    plans, dataset_json = read_json(model_root / "plans.json"), read_json(model_root / "dataset.json")
    config = model_root.name
    model = ModelFolder(model_root, config, plans, dataset_json, (fold,))
    owned = network is None
    if network is None:
        network, options, _ = load_network(fold_dir / CHECKPOINT, device or "cpu")
    else:
        options = {}
    saved_ds = getattr(network, "deep_supervision", False)
    dev = device or str(next(network.parameters()).device)
    predictor = Predictor(model, [network], dev, tta, step, options.get("mirror_axes"))
    pre_dir = work.preprocessed(model.plan.get("data_identifier", config))
    out_dir, ending = fold_dir / "validation", model.file_ending
    feeds_next = _is_previous_stage(plans, config)
    triples = []
    try:
        network.deep_supervision = False
        for case_id in _validation_cases(work, fold):
            data, _, props = load_case(pre_dir, case_id, mmap=False)
            out = out_dir / f"{case_id}{ending}"
            done = out.is_file() and (out_dir / f"{case_id}.npz").is_file()
            if feeds_next:
                done = done and next_stage_path(fold_dir, case_id).is_file()
            if overwrite or not done:
                if model.previous_stage:
                    onehot = load_previous_stage(model_root.parent / model.previous_stage, case_id, data.shape[1:])
                    data = torch.cat([torch.from_numpy(data), torch.from_numpy(onehot)], 0)
                probs = predictor.predict_data(data)
                if feeds_next:
                    save_next_stage(fold_dir, case_id, probs.cpu().numpy())
                predictor.export(probs, PreprocessedCase(case_id, data, props), out, save_probabilities=True)
            triples.append((case_id, out, _reference(Path(dataset_root) if dataset_root else None,
                                                     case_id, ending, props)))
    finally:
        network.deep_supervision = saved_ds
        if owned:
            del network
    return _summarize(triples, dataset_json, out_dir)


def _summarize(triples: list, dataset_json: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    summary = evaluate_spec_cases(triples, evaluation_spec(dataset_json), surface_metrics=False, desc=None)
    atomic_write_json(out_dir / "summary.json", summary)
    return summary
