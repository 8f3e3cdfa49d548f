"""Regions and the ignore label on the training side: stored foreground locations, patch sampling,
a tiny region training run through the trainer (outputs, checkpoint fields, named pseudo-Dice)."""

from __future__ import annotations

import json

import numpy as np
import torch
from training_helpers import PLAN_3D

from toolkit.dataset.labels import label_spec
from toolkit.preprocessing.preprocess import location_targets, sample_class_locations
from toolkit.preprocessing.storage import save_case
from toolkit.training.options import TrainerOptions
from toolkit.training.sampling import PatchSampler, PatchSpec, _centre
from toolkit.training.setup import resolve_training
from toolkit.training.trainer import FINAL, LOG, Trainer
from toolkit.workdir import WorkDir

BRATS = {"background": 0, "whole tumour": [1, 2, 3, 4], "tumour core": [1, 3, 4], "enhancing tumour": 4}


def test_location_keys_are_the_regions_and_the_annotated_voxels():
    assert location_targets(label_spec({"background": 0, "a": 1, "b": 2})) == [("1", (1,)), ("2", (2,))]
    spec = label_spec({**BRATS, "ignore": 5}, [2, 1, 4])
    assert location_targets(spec) == [("1,2,3,4", (1, 2, 3, 4)), ("1,3,4", (1, 3, 4)), ("4", (4,)),
                                      ("-1,0,1,2,3,4", (-1, 0, 1, 2, 3, 4))]
    seg = np.array([[[0, 1, 2, 3, 4, 5, -1, 5]]])
    locs = sample_class_locations(seg, location_targets(spec), seed=0)
    xs = {k: sorted(p[2] for p in v) for k, v in locs.items()}
    # the whole-tumour key holds the union of its labels; the ignore voxels (5) are in no key
    assert xs == {"1,2,3,4": [1, 2, 3, 4], "1,3,4": [1, 3, 4], "4": [4], "-1,0,1,2,3,4": [0, 1, 2, 3, 4, 6]}


def _spec(labels=(0, 1, 2), **kw) -> PatchSpec:
    return PatchSpec("unused", ("c",), (4, 4, 4), (4, 4, 4), 1, labels, **kw)


def test_forced_patches_draw_from_region_keys_and_random_ones_from_annotated_voxels():
    rng = np.random.default_rng(0)
    props = {"class_locations": {"1,2": [[1, 1, 1]], "2": [], "-1,0,1,2": [[5, 5, 5], [6, 6, 6]]}}
    regions = _spec(foreground_keys=("1,2", "2"))
    assert all(_centre(props, regions, True, rng).tolist() == [1, 1, 1] for _ in range(5))
    assert _centre(props, regions, False, rng) is None  # no ignore label: random patches stay random
    ignore = _spec(labels=(0, 1, 2, 3), foreground_keys=("1", "2"), annotated_key="-1,0,1,2")
    for _ in range(10):  # random patches of an ignore-label dataset sit on an annotated voxel
        assert _centre(props, ignore, False, rng).tolist() in ([5, 5, 5], [6, 6, 6])
    # a case without foreground: forced patches fall back to the annotated voxels, as nnU-Net's get_bbox
    assert _centre(props, ignore, True, rng).tolist() in ([5, 5, 5], [6, 6, 6])
    nothing = {"class_locations": {"1": [], "2": [], "-1,0,1,2": []}}
    assert _centre(nothing, ignore, False, rng) is None and _centre(nothing, ignore, True, rng) is None


def test_sampler_maps_values_to_indices_with_the_ignore_label_last(tmp_path):
    seg = np.array([0, 2, 5, 6, -1, 6, 2, 0], np.int16).reshape(1, 2, 2, 2)
    save_case(tmp_path, "c", np.zeros((1, 2, 2, 2), np.float32), seg, {"class_locations": {}})
    spec = PatchSpec(str(tmp_path), ("c",), (2, 2, 2), (2, 2, 2), 1, (0, 2, 5, 6), oversample=0.0)
    out = PatchSampler(spec).sample_one(np.random.default_rng(0), False)["seg"]
    assert out.ravel().tolist() == [0, 1, 2, 3, -1, 3, 1, 0]


def _region_work(tmp_path, ignore: bool = False):
    """Tiny stored cases (24^3, nested spheres: label 1 shell, label 2 core) declared as regions."""
    root = tmp_path / "Dataset998_Regions"
    root.mkdir(parents=True)
    labels = {"background": 0, "whole": [1, 2], "core": 2, **({"ignore": 3} if ignore else {})}
    ds = {"channel_names": {"0": "MRI"}, "labels": labels, "regions_class_order": [1, 2], "numTraining": 4,
          "file_ending": ".nii.gz"}
    (root / "dataset.json").write_text(json.dumps(ds), encoding="utf-8")
    wd = WorkDir.for_dataset(tmp_path / "work", root)
    wd.root.mkdir(parents=True)
    plans = {"dataset_name": root.name, "configurations": {"3d_fullres": PLAN_3D}, "channel_names": ds["channel_names"],
             "labels": labels}
    wd.plans.write_text(json.dumps(plans), encoding="utf-8")
    rng = np.random.default_rng(0)
    zz, yy, xx = np.ogrid[:24, :24, :24]
    ids = [f"case_{i}" for i in range(4)]
    for cid in ids:
        c = rng.integers(8, 16, 3)
        r2 = (zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2
        seg = np.zeros((1, 24, 24, 24), np.int16)
        seg[0][r2 <= 36], seg[0][r2 <= 9] = 1, 2
        if ignore:
            seg[0, ::2] = 3
        data = (rng.normal(0, 1, seg.shape) + 2.0 * (seg == 1) + 4.0 * (seg == 2)).astype(np.float32)
        spec = label_spec(labels, [1, 2])
        save_case(wd.preprocessed("3d_fullres"), cid, data, seg,
                  {"class_locations": sample_class_locations(seg[0], location_targets(spec), 0)})
    wd.splits.write_text(json.dumps([{"train": ids[:3], "val": ids[3:]}]), encoding="utf-8")
    return root, tmp_path / "work"


def test_region_dataset_trains_one_sigmoid_per_region_and_records_the_label_model(tmp_path):
    root, work = _region_work(tmp_path, ignore=True)
    setup = resolve_training(root, work, "3d_fullres", 0)
    assert setup.num_outputs == 2 and setup.labels == (0, 1, 2) and setup.targets.ignore_index == 3
    opts = TrainerOptions(epochs=2, iters_per_epoch=2, val_iters=1, num_workers=0, device="cpu",
                          final_validation=False, seed=1)
    fold = Trainer(setup, opts).run()
    ckpt = torch.load(fold / FINAL, weights_only=True)
    assert ckpt["label_outputs"] == [["whole", [1, 2]], ["core", [2]]]
    assert ckpt["has_regions"] is True and ckpt["regions_class_order"] == [1, 2] and ckpt["ignore_label"] == 3
    assert ckpt["network_weights"]["heads.0.weight"].shape[0] == 2
    assert all(len(d) == 2 for d in ckpt["logs"]["pseudo_dice"])
    assert "pseudo_dice [whole: " in (fold / LOG).read_text(encoding="utf-8")
