"""Patient-grouped splits: determinism, grouping, balance, nnU-Net compatibility, CLI."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toolkit.dataset.splits import load_or_make_splits, make_splits, resolve_splits
from toolkit.errors import SegkitError


def _check_partition(splits, case_ids, folds):
    assert len(splits) == folds
    vals = [c for s in splits for c in s["val"]]
    assert sorted(vals) == sorted(case_ids)  # every case validated exactly once
    for s in splits:
        assert set(s["train"]) | set(s["val"]) == set(case_ids)
        assert not set(s["train"]) & set(s["val"])


def test_identical_to_nnunet_kfold_without_groups():
    """Without groups the folds equal nnU-Net v2's (sklearn KFold shuffle, seed 12345, sorted keys)."""
    sklearn = pytest.importorskip("sklearn.model_selection")
    ids = [f"case_{i:03d}" for i in range(37)]
    keys = sorted(ids)
    expected = [
        {"train": [keys[i] for i in tr], "val": [keys[i] for i in te]}
        for tr, te in sklearn.KFold(n_splits=5, shuffle=True, random_state=12345).split(keys)
    ]
    assert make_splits(list(reversed(ids))) == expected


@settings(max_examples=60, deadline=None)
@given(
    group_sizes=st.lists(st.integers(min_value=1, max_value=4), min_size=5, max_size=40),
    folds=st.integers(min_value=2, max_value=5),
    seed=st.integers(min_value=0, max_value=2**31 - 1),
)
def test_grouped_split_properties(group_sizes, folds, seed):
    groups, case_ids = {}, []
    for g, size in enumerate(group_sizes):
        for k in range(size):
            case = f"p{g:03d}_t{k}"
            case_ids.append(case)
            groups[case] = f"p{g:03d}"
    splits = make_splits(case_ids, groups, folds, seed)
    _check_partition(splits, case_ids, folds)
    for s in splits:  # a patient never straddles folds
        assert not {groups[c] for c in s["train"]} & {groups[c] for c in s["val"]}
    assert splits == make_splits(list(reversed(case_ids)), groups, folds, seed)  # deterministic
    sizes = [len(s["val"]) for s in splits]
    # greedy largest-first placement: no fold exceeds the smallest by more than the largest group
    assert max(sizes) - min(sizes) <= max(group_sizes)


def test_balance_with_singletons_is_exact():
    ids = [f"c{i}" for i in range(23)]
    groups = {c: c for c in ids} | {"c0": "p", "c1": "p"}
    sizes = sorted(len(s["val"]) for s in make_splits(ids, groups))
    assert sizes == [4, 4, 5, 5, 5]


def test_too_few_groups_is_a_clear_error():
    ids = ["a", "b", "c", "d"]
    with pytest.raises(SegkitError, match="--folds 2"):
        make_splits(ids, {"a": "p1", "b": "p1", "c": "p2", "d": "p2"}, folds=5)


def test_existing_splits_file_wins(phantom_copy, tmp_path):
    own = [{"train": ["phantom_000"], "val": ["phantom_001"]}]
    (phantom_copy / "splits_final.json").write_text(json.dumps(own))
    ids = [f"phantom_{i:03d}" for i in range(8)]
    out = tmp_path / "splits.json"
    assert load_or_make_splits(phantom_copy, ids, None, out) == own
    assert json.loads(out.read_text()) == own
    (phantom_copy / "splits_final.json").write_text(json.dumps([{"train": ["ghost"], "val": []}]))
    with pytest.raises(SegkitError, match="unknown case"):
        load_or_make_splits(phantom_copy, ids, None)


def test_cli_split_respects_groups(phantom_dataset):
    from click.testing import CliRunner

    from toolkit.cli import cli

    result = CliRunner().invoke(cli, ["split", str(phantom_dataset)])
    assert result.exit_code == 0, result.output
    splits = json.loads(result.output)
    groups = json.loads((phantom_dataset / "groups.json").read_text())
    for s in splits:
        assert not {groups[c] for c in s["train"]} & {groups[c] for c in s["val"]}


def test_real_hippocampus_split(hippocampus_v2):
    from toolkit.dataset import discover_cases, load_dataset

    ids = [c.id for c in discover_cases(load_dataset(hippocampus_v2))]
    splits = make_splits(ids)
    _check_partition(splits, ids, 5)
    assert sorted(len(s["val"]) for s in splits) == [39] * 5


def test_resolve_splits_precedence(tmp_path):
    """Dataset's splits_final.json > the work directory's existing one > new folds (saved to the work dir)."""
    root, work_splits = tmp_path / "ds", tmp_path / "work" / "splits_final.json"
    root.mkdir()
    work_splits.parent.mkdir()
    ids = [f"c{i}" for i in range(6)]
    made = resolve_splits(root, ids, work_splits, folds=3)
    assert json.loads(work_splits.read_text()) == made and len(made) == 3
    mine = [{"train": ids[:4], "val": ids[4:]}]
    work_splits.write_text(json.dumps(mine))
    assert resolve_splits(root, ids, work_splits) == mine  # folds already trained on never move
    own = [{"train": ids[2:], "val": ids[:2]}]
    (root / "splits_final.json").write_text(json.dumps(own))
    assert resolve_splits(root, ids, work_splits) == own
    assert json.loads(work_splits.read_text()) == own
    with pytest.raises(SegkitError, match="names unpreprocessed case"):
        resolve_splits(root, ids[1:], work_splits, unknown="unpreprocessed")


def test_train_and_run_use_the_same_splits(tmp_path):
    """The trainer and the pipeline agree when the dataset brings its own splits after a work split exists."""
    from training_helpers import make_work

    from toolkit.training.setup import resolve_training

    root, work = make_work(tmp_path)
    own = [{"train": ["case_000", "case_001", "case_002"], "val": ["case_003", "case_004", "case_005"]}]
    (root / "splits_final.json").write_text(json.dumps(own))
    setup = resolve_training(root, work, "3d_fullres", 0)
    assert list(setup.val_cases) == own[0]["val"]
    with pytest.raises(SegkitError, match="fold 1 does not exist"):
        resolve_training(root, work, "3d_fullres", 1)
