"""GPU timing of the sliding window (one run on a CUDA machine; prints numbers, asserts nothing).

Compares batch_windows=1 with the automatic batch, TTA on, for the phantom's 3d_fullres U-Net
(features 32..320, patch 20x80x80) on a 64x256x256 volume, and the bare forward passes of the same
windows (the floor). Usage: PYTHONPATH=. python bench/gpu_sliding_window.py

Measured once on an NVIDIA H200 (torch 2.11+cu130), 216 windows x 8 mirror passes:
batch_windows=1 7.34 s, automatic batch 1.38 s, bare forward floor (batches of 8) 1.36 s:
end to end within 2% of the floor.
"""

from __future__ import annotations

import time

import torch

from toolkit.inference.sliding_window import _windows, mirror_variants, sliding_window_predict
from toolkit.network.architecture import UNetSpec
from toolkit.network.unet import build_network

PLAN = {"conv_kernel_sizes": [[1, 3, 3]] + [[3, 3, 3]] * 4,
        "pool_strides": [[1, 2, 2], [2, 2, 2], [2, 2, 2], [1, 2, 2]]}
PATCH = (20, 80, 80)


def _timed(fn) -> float:
    torch.cuda.synchronize()
    t = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    return time.perf_counter() - t


def main() -> None:
    net = build_network(UNetSpec.from_plan(PLAN, 1, 3)).cuda().eval()
    net.deep_supervision = False
    data = torch.randn(1, 64, 256, 256)
    n_win = len(_windows(data.shape[1:], PATCH, (0.5,) * 3))
    passes = n_win * len(mirror_variants((0, 1, 2)))
    sliding_window_predict(net, data, PATCH, 3, batch_windows=2)  # warm-up (cudnn autotune, allocator)
    for bw in (1, None):
        times = [_timed(lambda bw=bw: sliding_window_predict(net, data, PATCH, 3, batch_windows=bw))
                 for _ in range(3)]
        print(f"batch_windows={bw}: median {sorted(times)[1]:.3f} s for {n_win} windows x 8 mirrors")
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    x = torch.randn(8, 1, *PATCH, device="cuda")
    with torch.inference_mode(), torch.autocast("cuda", dtype=dtype):
        net(x)
        floor = _timed(lambda: [net(x) for _ in range(passes // 8)])
    print(f"floor: {passes} bare forward passes in batches of 8: {floor:.3f} s")


if __name__ == "__main__":
    main()
