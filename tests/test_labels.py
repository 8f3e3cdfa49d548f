"""The label model (toolkit/dataset/labels.py) against nnU-Net v2's LabelManager rules, by hand."""

import numpy as np
import pytest

from toolkit.dataset.labels import dataset_label_spec, label_spec
from toolkit.errors import SegkitError

BRATS = {"background": 0, "whole tumour": [1, 2, 3], "tumour core": [2, 3], "enhancing tumour": 3}


def test_plain_classes_are_softmax_outputs_in_value_order():
    spec = label_spec({"background": 0, "b": 2, "a": 1})
    assert not spec.has_regions and spec.num_outputs == 3
    assert spec.outputs == (("background", (0,)), ("a", (1,)), ("b", (2,)))
    assert spec.foreground_targets() == [("a", (1,)), ("b", (2,))]


def test_regions_one_output_per_foreground_region_in_declaration_order():
    spec = label_spec(BRATS, [1, 2, 3])
    assert spec.has_regions and spec.num_outputs == 3
    assert spec.regions == ((1, 2, 3), (2, 3), (3,))
    assert spec.all_labels == (0, 1, 2, 3) and spec.foreground_labels == (1, 2, 3)


def test_region_masks_and_painting_in_regions_class_order():
    spec = label_spec(BRATS, [1, 2, 3])
    seg = np.array([0, 1, 2, 3])
    masks = spec.seg_to_regions(seg)
    assert masks.tolist() == [[False, True, True, True], [False, False, True, True], [False, False, False, True]]
    # region probabilities: whole everywhere but voxel 0, core on 2 and 3, enhancing only on 3
    probs = np.array([[0.1, 0.9, 0.8, 0.7], [0.2, 0.4, 0.6, 0.9], [0.0, 0.2, 0.3, 0.51]])
    assert spec.probabilities_to_seg(probs).tolist() == [0, 1, 2, 3]


def test_plain_argmax_maps_channels_to_label_values():
    spec = label_spec({"background": 0, "x": 5, "y": 7})
    probs = np.array([[0.8, 0.1, 0.1], [0.1, 0.7, 0.2], [0.1, 0.2, 0.7]])
    assert spec.probabilities_to_seg(probs).tolist() == [0, 5, 7]


def test_ignore_label_must_be_highest_and_is_not_an_output():
    spec = label_spec({"background": 0, "organ": 1, "ignore": 2})
    assert spec.ignore == 2 and spec.num_outputs == 2 and 2 not in spec.all_labels
    with pytest.raises(SegkitError, match="highest label value"):
        label_spec({"background": 0, "organ": 2, "ignore": 1})
    with pytest.raises(SegkitError, match="one integer"):
        label_spec({"background": 0, "organ": 1, "ignore": [2, 3]})


def test_region_declaration_errors_name_the_file(tmp_path):
    where = tmp_path / "dataset.json"
    with pytest.raises(SegkitError, match="regions_class_order") as err:
        dataset_label_spec({"labels": BRATS}, where)
    assert str(where) in str(err.value)
    with pytest.raises(SegkitError, match="2 entries but 3 regions"):
        dataset_label_spec({"labels": BRATS, "regions_class_order": [1, 2]}, where)
    with pytest.raises(SegkitError, match="background"):
        label_spec({"organ": 1})
