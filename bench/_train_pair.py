"""One training of segkit and one of nnunetv2 on the same dataset, plan, fold, patch and batch.

Shared by bench/train_vs_nnunet.py (Hippocampus, 3d_fullres) and bench/regions_vs_nnunet.py (BraTS
regions, 2d or 3d_fullres). Each training is its own subprocess (segkit in this venv, nnunetv2 in the
peer's, both with 0 augmentation workers) that trains ``epochs x iters`` iterations, records the peak
RSS (VmHWM) at the end of training, then predicts the fold's validation cases with the tool's own
full inference settings into ``<fold>/validation/``. Nothing here scores: the callers do.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from _peer import peer_bin, peer_env, peer_python

REPO = Path(__file__).resolve().parents[1]

PEAK_RSS = """
import time
def peak_rss_mib():
    with open("/proc/self/status", encoding="utf-8") as f:  # VmHWM: this process's peak resident set
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024
"""

OURS_SNIPPET = PEAK_RSS + """
import json, sys
from toolkit.training.options import TrainerOptions
from toolkit.training.setup import resolve_training
from toolkit.inference.validation import predict_validation
from toolkit.training.trainer import Trainer
a = json.loads(sys.argv[1])
setup = resolve_training(a["raw"], a["work"], a["config"], 0)
options = TrainerOptions(epochs=a["epochs"], iters_per_epoch=a["iters"], val_iters=a["val_iters"],
                         batch_size=a["batch_size"], num_workers=0, device="cpu", seed=a["seed"],
                         save_every=a["epochs"], precision=a["precision"], final_validation=False)
trainer = Trainer(setup, options)
fold = trainer.run()
peak = peak_rss_mib()
start = time.perf_counter()
predict_validation(fold, setup.dataset_root, device="cpu", tta=a["tta"])  # the trainer's final validation
print(json.dumps({"epoch_times": trainer.logs["epoch_time"], "precision": trainer.precision,
                  "peak_rss_mib": peak, "fold": str(fold), "validation_s": time.perf_counter() - start,
                  "network": type(trainer.network).__name__}))
"""

PEER_SNIPPET = PEAK_RSS + """
import json, sys, torch
from nnunetv2.run.run_training import get_trainer_from_args
dataset, config, plans, tta = sys.argv[1], sys.argv[2], sys.argv[6], sys.argv[7] == "tta"
epochs, iters, val_iters = (int(a) for a in sys.argv[3:6])
t = get_trainer_from_args(dataset, config, 0, "nnUNetTrainer", plans, device=torch.device("cpu"))
t.num_epochs, t.num_iterations_per_epoch, t.num_val_iterations_per_epoch = epochs, iters, val_iters
t.run_training()
peak = peak_rss_mib()
start = time.perf_counter()
if not tta:
    t.inference_allowed_mirroring_axes = None  # its validation predictor mirrors along these axes
t.perform_actual_validation()
log = getattr(t.logger, "local_logger", t.logger).my_fantastic_logging  # 2.6+: MetaLogger
times = [e - s for s, e in zip(log["epoch_start_timestamps"], log["epoch_end_timestamps"])]
print(json.dumps({"epoch_times": times, "precision": "fp32", "peak_rss_mib": peak, "fold": t.output_folder,
                  "validation_s": time.perf_counter() - start, "network": type(t.network).__name__}))
"""


def preprocess_both(raw: Path, work: Path, scratch: Path, dataset_id: str, config: str,
                    preset: str = "default") -> dict[str, str]:
    """segkit fingerprint + plan (``preset``) + preprocess ``config`` into ``work``; nnunetv2
    plan_and_preprocess ``-c config`` with ``preset``'s planner into ``scratch``'s nnU-Net folders
    (each skipped once done); returns the peer's environment."""
    from toolkit.cli import main
    from toolkit.planning import load_preset

    settings = load_preset(preset)
    if not (work / raw.name / "preprocessed" / config).is_dir():
        for args in (["fingerprint"], ["plan", "--preset", preset], ["preprocess", "-c", config]):
            try:
                main([args[0], str(raw), "--work", str(work), *args[1:]])
            except SystemExit as exc:
                if exc.code:
                    raise
    env = peer_env(scratch / "raw", scratch / "nnunet_pre", scratch / "nnunet_res")
    if not _peer_preprocessed(scratch / "nnunet_pre" / raw.name, settings.nnunet_plans_name, config):
        subprocess.run([str(peer_bin("nnUNetv2_plan_and_preprocess")), "-d", dataset_id, "-c", config,
                        "-pl", settings.nnunet_planner, "--verify_dataset_integrity", "-np", "2"],
                       env=env, check=True)
    return env


def _peer_preprocessed(folder: Path, plans_name: str, config: str) -> bool:
    """Plans ``plans_name`` exist in ``folder`` and so does their ``config`` data folder (its data identifier)."""
    plans = folder / f"{plans_name}.json"
    if not plans.is_file():
        return False
    plan = json.loads(plans.read_text(encoding="utf-8"))["configurations"][config]
    return (folder / plan["data_identifier"]).is_dir()


@dataclass(frozen=True)
class TrainedRun:
    """What one training subprocess reports (``fold`` holds ``validation/`` with its predictions)."""

    epoch_times: list[float]
    precision: str
    peak_rss_mib: float
    fold: Path
    validation_s: float
    network: str

    def s_per_iter(self, iters: int) -> float:
        """Median epoch time over ``iters`` (an epoch also runs the validation iterations)."""
        return statistics.median(self.epoch_times) / iters


def _run(stdout: str) -> TrainedRun:
    res = json.loads(stdout.strip().splitlines()[-1])
    return TrainedRun(res["epoch_times"], res["precision"], res["peak_rss_mib"], Path(res["fold"]),
                      res["validation_s"], res["network"])


def foreground_dice(summary: Path) -> float:
    """Mean foreground Dice of a validation ``summary.json`` (segkit's evaluator writes both tools' summaries
    in these benches; ``foreground_mean`` is a dict of metrics, or the Dice itself in older summaries)."""
    fg = json.loads(summary.read_text(encoding="utf-8"))["foreground_mean"]
    return float(fg["Dice"] if isinstance(fg, dict) else fg)


def check_same_plan(ours: dict, peer: dict, config: str = "3d_fullres") -> None:
    """Exit with the differing fields unless both plans of ``config`` have the same patch and network."""
    arch = peer["architecture"]["arch_kwargs"]
    n = len(arch["features_per_stage"])
    blocks = arch.get("n_blocks_per_stage", arch.get("n_conv_per_stage"))
    ours_arch = ours.get("architecture") or {"n_blocks_per_stage": [2] * n, "n_conv_per_stage_decoder": [2] * (n - 1)}
    pairs = {
        "patch_size": (ours["patch_size"], peer["patch_size"]),
        "features_per_stage": (ours["features_per_stage"], arch["features_per_stage"]),
        "conv_kernel_sizes": (ours["conv_kernel_sizes"], arch["kernel_sizes"]),
        "pool_strides": (ours["pool_strides"], arch["strides"][1:]),
        "n_blocks_per_stage": (ours_arch["n_blocks_per_stage"], blocks),
        "n_conv_per_stage_decoder": (ours_arch["n_conv_per_stage_decoder"], arch["n_conv_per_stage_decoder"]),
    }
    differ = [f"{k}: segkit {a} vs nnunetv2 {b}" for k, (a, b) in pairs.items()
              if json.loads(json.dumps(a)) != json.loads(json.dumps(b))]
    if differ:
        raise SystemExit(f"segkit's and nnunetv2's {config} plans differ, not a like-for-like run: " + "; ".join(differ))


def train_ours(raw: Path, work: Path, config: str, epochs: int, iters: int, val_iters: int, batch_size: int,
               precision: str, seed: int = 0, tta: bool = True) -> TrainedRun:
    """One segkit training subprocess on fold 0 of ``raw`` (planned and preprocessed in ``work``); its
    validation predictions mirror (test-time augmentation) unless ``tta`` is False."""
    payload = {"raw": str(raw), "work": str(work), "config": config, "epochs": epochs, "iters": iters,
               "val_iters": val_iters, "batch_size": batch_size, "seed": seed, "precision": precision, "tta": tta}
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    done = subprocess.run([sys.executable, "-c", OURS_SNIPPET, json.dumps(payload)], env=env, stdout=subprocess.PIPE,
                          text=True, encoding="utf-8", errors="replace")  # stderr: the training log, live
    if done.returncode:
        raise SystemExit(f"segkit training failed (exit {done.returncode}); its log is above")
    return _run(done.stdout)


def train_peer(scratch: Path, dataset: str, config: str, epochs: int, iters: int, val_iters: int,
               plans_name: str, tta: bool = True) -> TrainedRun:
    """One nnunetv2 training subprocess (``nnUNetTrainer`` on ``plans_name``, fold 0) in ``scratch``'s
    nnU-Net folders (raw, nnunet_pre, nnunet_res); ``dataset`` is its name or id; ``tta`` as in
    :func:`train_ours`."""
    env = peer_env(scratch / "raw", scratch / "nnunet_pre", scratch / "nnunet_res", n_proc_da=0)
    done = subprocess.run([str(peer_python()), "-c", PEER_SNIPPET, dataset, config, str(epochs), str(iters),
                           str(val_iters), plans_name, "tta" if tta else "no-tta"],
                          env=env, capture_output=True, text=True, encoding="utf-8", errors="replace")
    if done.returncode:
        raise SystemExit(f"nnunetv2 training failed:\n{done.stderr[-3000:]}")
    return _run(done.stdout)


def peer_plans_with_batch(folder: Path, plans_name: str, config: str, batch_size: int) -> str:
    """A copy of the peer's plans in ``folder`` named ``<plans_name>_bs<N>`` whose ``config`` batch is
    ``batch_size`` (its data identifier unchanged, so the preprocessed data is shared)."""
    plans = json.loads((folder / f"{plans_name}.json").read_text(encoding="utf-8"))
    name = f"{plans_name}_bs{batch_size}"
    plans["plans_name"] = name
    plans["configurations"][config]["batch_size"] = batch_size
    (folder / f"{name}.json").write_text(json.dumps(plans, indent=1), encoding="utf-8")
    return name


def peer_fold(scratch: Path, dataset: str, plans_name: str, config: str) -> Path:
    """nnunetv2's fold 0 folder of ``nnUNetTrainer`` on ``plans_name`` / ``config``."""
    return scratch / "nnunet_res" / dataset / f"nnUNetTrainer__{plans_name}__{config}" / "fold_0"
