"""Augmentation settings as data: YAML overrides reach the loader, bad files are one-line errors, the
settings are recorded in checkpoints and a resumed run keeps them; docs/augmentation.md lists them all."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
import torch
from training_helpers import make_work

from toolkit.errors import SegkitError
from toolkit.training.augment_settings import AugmentationSettings, load_settings_file, with_overrides
from toolkit.training.options import TrainerOptions
from toolkit.training.setup import resolve_training
from toolkit.training.trainer import FINAL, LATEST, stored_options

ALL_OFF = {k: 0.0 for k in ("p_rotation", "p_scale", "p_noise", "p_blur", "p_brightness", "p_contrast", "p_lowres",
                            "p_gamma", "p_gamma_inverted", "p_mirror")}


def _yaml(tmp_path: Path, text: str, name: str = "aug.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_are_the_method_values():
    s = AugmentationSettings()
    assert (s.p_rotation, s.p_scale, s.scale, s.rotation_3d, s.rotation_dummy_2d, s.rotation_2d,
            s.rotation_2d_anisotropic) == (0.2, 0.2, (0.7, 1.4), 30.0, 180.0, 180.0, 15.0)
    assert (s.p_noise, s.noise_std, s.p_blur, s.p_blur_channel, s.blur_sigma) == (0.15, (0.0, 0.1), 0.2, 0.5, (0.5, 1.5))
    assert (s.p_brightness, s.brightness, s.p_contrast, s.contrast) == (0.15, (0.7, 1.3), 0.15, (0.65, 1.5))
    assert (s.p_lowres, s.p_lowres_channel, s.lowres_zoom) == (0.25, 0.5, (0.5, 1.0))
    assert (s.p_gamma, s.p_gamma_inverted, s.gamma, s.p_mirror, s.mirror_axes) == (0.15, 0.15, (0.7, 1.5), 0.5, None)
    assert (s.p_binary_operator, s.ball_radius, s.p_remove_component, s.max_component_fraction) == (0.4, (1, 8), 0.2, 0.15)
    assert AugmentationSettings.from_dict(s.to_dict()) == s


def test_yaml_overrides_a_subset(tmp_path):
    path = _yaml(tmp_path, "p_noise: 1\nscale: [0.8, 1.2]\nmirror_axes: [2, 0]\nreset_outside_mask: false\n")
    s = load_settings_file(path)
    assert s.p_noise == 1.0 and s.scale == (0.8, 1.2) and s.mirror_axes == (0, 2) and not s.reset_outside_mask
    assert s.p_blur == AugmentationSettings().p_blur
    assert load_settings_file(_yaml(tmp_path, "", "empty.yaml")) == AugmentationSettings()
    base = AugmentationSettings(p_gamma=0.5)
    assert load_settings_file(path, base).p_gamma == 0.5  # overrides apply on top of a base (resume)


@pytest.mark.parametrize("text, key, problem", [
    ("p_nosie: 0.1\n", "p_nosie", "unknown augmentation setting"),
    ("p_noise: high\n", "p_noise", "must be a number"),
    ("p_noise: true\n", "p_noise", "must be a number"),
    ("p_noise: 1.5\n", "p_noise", "probability"),
    ("scale: [1.4, 0.7]\n", "scale", "min <= max"),
    ("scale: [0.7, 1.0, 1.4]\n", "scale", "two numbers"),
    ("lowres_zoom: [0.5, 2.0]\n", "lowres_zoom", "<= 1"),
    ("rotation_3d: 200\n", "rotation_3d", "180"),
    ("mirror_axes: [0, 3]\n", "mirror_axes", "spatial axes"),
    ("reset_outside_mask: 1\n", "reset_outside_mask", "true or false"),
    ("dummy_2d_ratio: 0.5\n", "dummy_2d_ratio", ">= 1"),
])
def test_bad_values_name_file_and_key(tmp_path, text, key, problem):
    path = _yaml(tmp_path, text)
    with pytest.raises(SegkitError) as exc:
        load_settings_file(path)
    message = str(exc.value)
    assert str(path) in message and repr(key) in message and problem in message and "\n" not in message


def test_unreadable_or_malformed_files(tmp_path):
    for path, problem in ((tmp_path / "missing.yaml", "cannot read"),
                          (_yaml(tmp_path, "p_noise: [1, \n", "broken.yaml"), "invalid YAML"),
                          (_yaml(tmp_path, "- p_noise\n", "list.yaml"), "must be a mapping")):
        with pytest.raises(SegkitError, match=problem) as exc:
            load_settings_file(path)
        assert str(path) in str(exc.value) and "\n" not in str(exc.value)
    with pytest.raises(SegkitError, match="checkpoint"):
        with_overrides(AugmentationSettings(), {"p_noise": -1}, "checkpoint")


def _loader_batches(root, work, settings: AugmentationSettings, n: int = 6):
    from toolkit.training.data import make_loaders

    options = TrainerOptions(seed=4, augmentation=settings)
    train, val = make_loaders(resolve_training(root, work, "3d_fullres", 0), options, 2, 0)
    val.close()
    with train:
        return [b["data"] for b in train.batches(0, n)]


def test_yaml_probability_reaches_the_loader(tmp_path):
    """p_noise 1 (everything else off): every sample differs from the un-noised one by noise of std <= 0.1;
    p_noise 0: every sample equals it (same patches: the patch choice has its own generator)."""
    root, work = make_work(tmp_path)
    off = load_settings_file(_yaml(tmp_path, "\n".join(f"{k}: 0" for k in ALL_OFF)))
    noisy = load_settings_file(_yaml(tmp_path, "p_noise: 1.0\n", "noise.yaml"), off)
    plain, again, noised = (_loader_batches(root, work, s) for s in (off, off, noisy))
    for a, b, c in zip(plain, again, noised, strict=True):
        assert np.array_equal(a, b)
        for j in range(a.shape[0]):
            diff = c[j] - a[j]
            assert np.count_nonzero(diff) > 0.99 * diff.size and 0 < diff.std() <= 0.1 + 1e-3


def _cli(args: list[str]) -> int:
    from toolkit.cli import main

    with pytest.raises(SystemExit) as exc:
        main(args)
    return exc.value.code


def test_cli_records_settings_in_checkpoint_and_resume_keeps_them(tmp_path):
    root, work = make_work(tmp_path)
    config = _yaml(tmp_path, "p_noise: 1.0\nscale: [0.8, 1.2]\nmirror_axes: [0, 1]\n")
    base = ["train", str(root), "-c", "3d_fullres", "-f", "0", "--work", str(work)]
    first = [*base, "--epochs", "1", "--iters-per-epoch", "1", "--val-iters", "1", "--num-workers", "0",
             "--device", "cpu", "--skip-validation", "--augmentation-config", str(config)]
    assert _cli(first) == 0
    fold = resolve_training(root, work, "3d_fullres", 0).fold_dir
    ck = torch.load(fold / LATEST, weights_only=True)
    recorded = ck["options"]["augmentation"]
    assert recorded["p_noise"] == 1.0 and recorded["scale"] == [0.8, 1.2] and recorded["mirror_axes"] == [0, 1]
    assert stored_options(fold).augmentation == load_settings_file(config)
    assert _cli([*base, "--epochs", "2", "--resume", "--skip-validation"]) == 0  # no config: the recorded one
    assert TrainerOptions.from_dict(torch.load(fold / FINAL, weights_only=True)["options"]).augmentation == \
        load_settings_file(config)
    more = _yaml(tmp_path, "p_gamma: 0.0\n", "more.yaml")  # given again on resume: on top of the recorded
    assert _cli([*base, "--epochs", "3", "--resume", "--skip-validation", "--augmentation-config", str(more)]) == 0
    final = TrainerOptions.from_dict(torch.load(fold / FINAL, weights_only=True)["options"]).augmentation
    assert final.p_gamma == 0.0 and final.p_noise == 1.0 and final.scale == (0.8, 1.2)


def test_old_checkpoint_options_get_the_defaults():
    values = TrainerOptions().to_dict()
    del values["augmentation"]
    assert TrainerOptions.from_dict(values).augmentation == AugmentationSettings()


@pytest.mark.parametrize("command", ["train", "run"])
def test_cli_bad_config_is_one_line_exit_2(tmp_path, capsys, command):
    root, work = make_work(tmp_path)
    bad = _yaml(tmp_path, "p_noise: 0.1\nblur_sigma: [2, 1]\n", "bad.yaml")
    args = [command, str(root), "--work", str(work), "--augmentation-config", str(bad)]
    args += ["-c", "3d_fullres", "-f", "0"]
    assert _cli(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(bad) in err and "'blur_sigma'" in err


def test_run_passes_settings_to_every_fold():
    from toolkit.pipeline.run import RunOptions, _trainer_options

    settings = AugmentationSettings(p_noise=0.0)
    assert _trainer_options(RunOptions(augmentation=settings), 0, {}).augmentation == settings
    assert _trainer_options(RunOptions(), 0, {}).augmentation == AugmentationSettings()


def test_docs_table_lists_every_setting_with_its_default():
    doc = (Path(__file__).resolve().parents[1] / "docs" / "augmentation.md").read_text(encoding="utf-8")
    rows = {line.split("|")[1].strip().strip("`"): line for line in doc.splitlines() if line.startswith("| `")}
    for f in fields(AugmentationSettings):
        assert f.name in rows, f.name
        default = AugmentationSettings().to_dict()[f.name]
        shown = "null" if default is None else str(default).lower() if isinstance(default, bool) else \
            f"[{default[0]:g}, {default[1]:g}]" if isinstance(default, list) else f"{default:g}"
        assert f"| {shown} |" in rows[f.name], (f.name, shown)
