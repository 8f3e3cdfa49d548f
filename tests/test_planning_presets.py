"""Planner presets (default, resenc-m/l/xl) reproduce nnunetv2 2.8.1's planners; plans.json records them.

The golden plans (tests/data/nnunet_plans_golden.json) were produced by bench/plans_vs_nnunet.py running
nnunetv2's ExperimentPlanner and nnUNetPlannerResEncM/L/XL on the fingerprints stored in the same file;
no peer is needed here. Spacing, patch size, strides, kernels, features and blocks must be equal,
batch size within 1 (segkit rounds the headroom down, nnU-Net to nearest: docs/method.md 5).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from plans_golden import compare_preset, dataset_spec, load_golden

from toolkit.cli import cli
from toolkit.errors import SegkitError
from toolkit.network.architecture import UNetSpec
from toolkit.planning import DEFAULT_SETTINGS, load_preset, load_presets, plan_experiment
from toolkit.planning.configuration import plan_configuration
from toolkit.planning.presets import settings_from_mapping

GOLDEN = load_golden()
PRESETS = ("default", "resenc-m", "resenc-l", "resenc-xl")


def _cases():
    for key in GOLDEN["fingerprints"]:
        for preset, peer in GOLDEN["plans"][key].items():
            for config in ("2d", "3d_fullres", "3d_lowres"):
                if config not in peer["configurations"]:
                    continue
                yield pytest.param(key, preset, config, id=f"{key}-{preset}-{config}")


def test_golden_covers_every_preset_and_the_required_fingerprints():
    assert set(GOLDEN["nnunetv2"]) and GOLDEN["nnunetv2"] == "2.8.1"
    required = {"brain_mri", "ct_abdomen", "brats_4ch", "aniso_10x06", "em_huge", "sagittal_mri"}
    assert required <= set(GOLDEN["fingerprints"])
    assert all(set(GOLDEN["plans"][k]) == set(PRESETS) for k in GOLDEN["fingerprints"])
    cascades = [k for k in GOLDEN["fingerprints"] if "3d_lowres" in GOLDEN["plans"][k]["resenc-m"]["configurations"]]
    assert cascades, "some fingerprint must trigger the cascade so 3d_lowres is compared too"


@pytest.mark.parametrize(("key", "preset", "config"), list(_cases()))
def test_plans_equal_nnunetv2(key, preset, config):
    entry, peer = GOLDEN["fingerprints"][key], GOLDEN["plans"][key][preset]
    rows = compare_preset(key, entry, peer, load_preset(preset))
    assert rows[0].ok, f"configurations: segkit {rows[0].ours} vs nnunetv2 {rows[0].peer}"
    bad = [f"{r.field}: segkit {r.ours} vs nnunetv2 {r.peer}" for r in rows if r.config == config and not r.ok]
    assert not bad, "; ".join(bad)


def test_default_preset_is_the_default_settings():
    presets = load_presets()
    assert list(presets) == list(PRESETS)
    assert presets["default"] == DEFAULT_SETTINGS
    assert load_preset(None) == DEFAULT_SETTINGS


def test_resenc_presets_carry_nnunetv2s_numbers():
    m, large, xl = load_preset("resenc-m"), load_preset("resenc-l"), load_preset("resenc-xl")
    for s in (m, large, xl):
        assert s.architecture == "residual_encoder_unet" and s.patch_fits_at == "reference_batch"
        assert s.n_blocks_per_stage == (1, 3, 4, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6)
        assert s.n_conv_per_stage_decoder == (1,) * 12 and s.max_dataset_fraction_per_batch == 1.0
    assert (m.reference_voxels_3d, m.reference_voxels_2d, m.gpu_memory_gb, m.reference_gpu_gb) == (680e6, 135e6, 8, 8)
    assert (large.reference_voxels_3d, large.reference_voxels_2d, large.gpu_memory_gb) == (2.1e9, 380e6, 24)
    assert (xl.reference_voxels_3d, xl.reference_voxels_2d, xl.gpu_memory_gb) == (3.6e9, 560e6, 40)
    assert [s.nnunet_plans_name for s in (m, large, xl)] == [
        "nnUNetResEncUNetMPlans", "nnUNetResEncUNetLPlans", "nnUNetResEncUNetXLPlans"]


def test_unknown_preset_and_bad_preset_data_are_one_line_errors():
    with pytest.raises(SegkitError, match="unknown preset 'resenc-s' \\(known: default, resenc-m"):
        load_preset("resenc-s")
    with pytest.raises(ValueError, match="unknown key 'reference_voxel_3d'"):
        settings_from_mapping("x", {"reference_voxel_3d": 1})
    with pytest.raises(ValueError, match="architecture.name must be one of"):
        settings_from_mapping("x", {"architecture": {"name": "vnet", "n_blocks_per_stage": [1, 2],
                                                     "n_conv_per_stage_decoder": [1]}})
    with pytest.raises(ValueError, match="one entry less"):
        settings_from_mapping("x", {"architecture": {"name": "plain_unet", "n_blocks_per_stage": [2, 2],
                                                     "n_conv_per_stage_decoder": [2, 2]}})
    with pytest.raises(ValueError, match="patch_fits_at must be one of"):
        settings_from_mapping("x", {"patch_fits_at": "max_batch"})
    with pytest.raises(ValueError, match="reference_batch_3d must be a positive integer"):
        settings_from_mapping("x", {"reference_batch_3d": 2.5})


def _golden_plans(key: str, preset: str, gpu: float | None = None) -> dict:
    entry = GOLDEN["fingerprints"][key]
    return plan_experiment(entry["fingerprint"], dataset_spec(key, entry["dataset"]), gpu, load_preset(preset))[0]


def test_plans_record_the_preset_and_every_configurations_architecture():
    for preset, name, blocks, dec in (("default", "plain_unet", 2, 2), ("resenc-m", "residual_encoder_unet", None, 1)):
        plans = _golden_plans("ct_abdomen", preset)
        assert plans["preset"] == preset
        assert {"2d", "3d_fullres", "3d_lowres", "3d_cascade_fullres"} <= set(plans["configurations"])
        for c in plans["configurations"].values():
            n = len(c["conv_kernel_sizes"])
            arch = c["architecture"]
            assert arch["name"] == name and arch["n_conv_per_stage_decoder"] == [dec] * (n - 1)
            assert arch["n_blocks_per_stage"] == ([2] * n if blocks else [1, 3, 4, 6, 6, 6, 6, 6][:n])
            spec = UNetSpec.from_plan(c, 1, 7, deep_supervision=False)
            assert spec.architecture == name and spec.feature_map_voxels(c["patch_size"]) == c["estimated_feature_map_voxels"]


def test_resenc_estimate_counts_the_residual_network():
    """The same topology costs more feature maps as a ResEnc U-Net: the estimate must see that."""
    plain, res = _golden_plans("brain_mri", "default"), _golden_plans("brain_mri", "resenc-m")
    p2, r2 = plain["configurations"]["2d"], res["configurations"]["2d"]
    assert p2["patch_size"] == r2["patch_size"] and p2["conv_kernel_sizes"] == r2["conv_kernel_sizes"]
    assert r2["estimated_feature_map_voxels"] > 1.4 * p2["estimated_feature_map_voxels"]


def test_gpu_memory_target_is_the_presets_unless_given():
    default_l = _golden_plans("brain_mri", "resenc-l")
    assert default_l["gpu_memory_gb"] == 24
    assert default_l["configurations"]["3d_fullres"]["memory_budget_voxels"] == pytest.approx(2.1e9 * 2)
    at_8 = _golden_plans("brain_mri", "resenc-l", gpu=8.0)
    assert at_8["gpu_memory_gb"] == 8
    assert at_8["configurations"]["3d_fullres"]["memory_budget_voxels"] == pytest.approx(2.1e9 * 8 / 24 * 2)


def test_resenc_2d_shrinks_until_the_reference_batch_fits():
    """nnU-Net's ResEnc planners shrink the 2d patch until batch 12 fits, the default until batch 2 does."""
    default = plan_configuration([0.25, 0.25], [4096, 4096], 1e12, 1, 3, 8.0, load_preset("default"))
    resenc = plan_configuration([0.25, 0.25], [4096, 4096], 1e12, 1, 3, 8.0, load_preset("resenc-m"))
    assert default.batch_size < 12 and 2 * default.estimate <= default.budget
    assert resenc.batch_size >= 12 and 12 * resenc.estimate <= resenc.budget
    assert resenc.patch_size < default.patch_size


# ---- CLI ------------------------------------------------------------------------------------------

def _fp_files(tmp_path: Path, key: str = "brain_mri") -> list[str]:
    entry = GOLDEN["fingerprints"][key]
    fp, ds = tmp_path / "fp.json", tmp_path / "dataset.json"
    fp.write_text(json.dumps(entry["fingerprint"]), encoding="utf-8")
    ds.write_text(json.dumps(entry["dataset"]), encoding="utf-8")
    return ["--fingerprint", str(fp), "--dataset-json", str(ds)]


def test_cli_plan_preset_explain(tmp_path):
    runner = CliRunner()
    res = runner.invoke(cli, ["plan", *_fp_files(tmp_path), "--preset", "resenc-l", "--explain"])
    assert res.exit_code == 0, res.output
    plans = json.loads(res.stdout)
    assert plans["preset"] == "resenc-l" and plans["gpu_memory_gb"] == 24
    assert plans["configurations"]["3d_fullres"]["architecture"]["name"] == "residual_encoder_unet"
    err = res.stderr
    assert "preset resenc-l: nnunetv2 2.8.1 nnUNetPlannerResEncL (plans nnUNetResEncUNetLPlans)" in err
    assert "encoder residual blocks per stage (1, 3, 4, 6, 6" in err
    assert "GPU memory target 24 GB (the preset's default)" in err
    assert "3D 2.1e+09 at batch 2, 2D 3.8e+08 at batch 12" in err
    assert "patch shrinks until the reference batch (2 in 3D, 12 in 2D) fits" in err
    assert "(resenc-l, 24.0 GB)" in err and "residual encoder blocks 1-3-4-6" in err  # the plans table
    res8 = runner.invoke(cli, ["plan", *_fp_files(tmp_path), "--preset", "resenc-l", "--gpu-memory-gb", "8", "--explain"])
    assert res8.exit_code == 0 and json.loads(res8.stdout)["gpu_memory_gb"] == 8
    assert "GPU memory target 8 GB (--gpu-memory-gb); references scale by 8 / 24 GB" in res8.stderr
    plain = runner.invoke(cli, ["plan", *_fp_files(tmp_path), "--explain"])
    assert json.loads(plain.stdout)["preset"] == "default"
    assert "preset default: nnunetv2 2.8.1 ExperimentPlanner (plans nnUNetPlans)" in plain.stderr


def test_cli_unknown_preset_fails_with_one_line(tmp_path):
    res = CliRunner().invoke(cli, ["plan", *_fp_files(tmp_path), "--preset", "resenc-s"])
    assert res.exit_code == 2
    assert "unknown preset 'resenc-s' (known: default, resenc-m, resenc-l, resenc-xl)" in res.output
    assert len(res.output.strip().splitlines()) == 1


def test_run_refuses_a_preset_other_than_the_plans(tmp_path):
    """plan with resenc-m, then `run --preset default` on the same work dir stops before training."""
    from phantom_helpers import tiny_phantom_two_folds

    ds, work = tiny_phantom_two_folds(tmp_path / "raw", n_train=4), tmp_path / "work"
    runner = CliRunner()
    res = runner.invoke(cli, ["plan", str(ds), "--work", str(work), "--preset", "resenc-m", "-j", "1"])
    assert res.exit_code == 0, res.output
    plans = json.loads((work / ds.name / "plans.json").read_text(encoding="utf-8"))
    assert plans["preset"] == "resenc-m"
    res = runner.invoke(cli, ["run", str(ds), "--work", str(work), "--preset", "default", "-j", "1"])
    assert res.exit_code == 2
    assert "was planned with preset 'resenc-m', not 'default'" in res.output
    assert not (work / ds.name / "preprocessed").exists()
    res = runner.invoke(cli, ["run", str(ds), "--work", str(work), "--preset", "resenc-s"])
    assert res.exit_code == 2 and "unknown preset 'resenc-s'" in res.output


def test_presets_yaml_ships_with_the_package():
    import fnmatch

    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = project["tool"]["setuptools"]["package-data"]["toolkit"]
    assert any(fnmatch.fnmatch("planning/presets.yaml", p) for p in patterns)
