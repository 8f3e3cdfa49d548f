"""The peer (nnunetv2) for side-by-side benchmarks, installed in its own virtualenv.

nnunetv2 is never a dependency of segkit: benchmarks create ``bench/.peer-venv`` on first use
(CPU torch, nnunetv2 2.8.1, without the timm/torchvision pair that cannot load beside a CPU torch;
see shared/peer-notes.md) and drive it through subprocesses.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PEER_VENV = Path(os.environ.get("SEGKIT_PEER_VENV", Path(__file__).resolve().parent / ".peer-venv"))
NNUNET_VERSION = "2.8.1"
TORCH_SPEC = "torch==2.13.0"


def peer_python() -> Path:
    """Path of the peer venv's python, creating and filling the venv if needed (about 1.5 min)."""
    py = PEER_VENV / "bin" / "python"
    stamp = PEER_VENV / ".ready"
    if stamp.exists():
        return py
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True)
    pip = [str(py), "-m", "pip", "install", "-q"]
    subprocess.run(pip + [TORCH_SPEC], check=True)
    # name torch again so that nnunetv2's open torch requirement cannot upgrade it to another build:
    # both tools must run on the very same torch for a fair comparison
    subprocess.run(pip + [f"nnunetv2=={NNUNET_VERSION}", TORCH_SPEC], check=True)
    subprocess.run([str(py), "-m", "pip", "uninstall", "-q", "-y", "timm", "torchvision"], check=False)
    stamp.touch()
    return py


def peer_env(raw: Path, preprocessed: Path, results: Path, n_proc_da: int | None = None) -> dict[str, str]:
    """Environment for nnU-Net's scratch folders (it reads these three variables)."""
    env = dict(os.environ)
    env.update(nnUNet_raw=str(raw), nnUNet_preprocessed=str(preprocessed), nnUNet_results=str(results))
    if n_proc_da is not None:
        env["nnUNet_n_proc_DA"] = str(n_proc_da)
    for p in (raw, preprocessed, results):
        Path(p).mkdir(parents=True, exist_ok=True)
    return env


def peer_bin(name: str) -> Path:
    """A console script of the peer venv, e.g. ``nnUNetv2_plan_and_preprocess``."""
    return peer_python().parent / name
