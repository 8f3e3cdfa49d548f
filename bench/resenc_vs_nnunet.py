"""ResEnc M training step on CPU: segkit's residual-encoder U-Net vs nnunetv2's (dynamic_network_architectures).

Both networks get the same arguments (ResEnc M: encoder blocks 1, 3, 4, 6, ..., one decoder conv per
stage, features 32 doubling capped at 320, kernels 3, strides 2; conv bias, affine InstanceNorm,
LeakyReLU, deep supervision on), the same patch, batch, random input and the same step: forward,
cross-entropy on every deep-supervision output against nearest-downsampled random labels, backward,
SGD (Nesterov, momentum 0.99, lr 0.01, weight decay 3e-5). Each measurement is a fresh subprocess
(segkit in this venv, the peer in its own venv, same torch build and thread count), alternated
segkit, peer, segkit, peer ...; a subprocess runs ``--warmup`` untimed steps and ``--steps`` timed ones
and reports the median step time and its peak RSS above the RSS after imports (network, optimizer
state, activations and autograd buffers). Prints medians over the repeats and the ratios.

    .venv/bin/python bench/resenc_vs_nnunet.py [--patch 40 56 40] [--batch 2] [--stages 4]
                                                [--steps 5] [--warmup 1] [--repeats 2] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _peer import peer_python  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BLOCKS = [1, 3, 4, 6, 6, 6, 6, 6]  # nnUNetPlannerResEncM encoder blocks per stage

WORKER = r"""
import json, resource, statistics, sys, time
import torch
import torch.nn.functional as F

args = json.loads(sys.argv[1])
torch.set_num_threads(args["threads"])
torch.manual_seed(0)
nd, n = len(args["patch"]), args["stages"]

def rss_kib():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS"))

feats = [min(32 * 2**i, 320) for i in range(n)]
kernels = [[3] * nd] * n
strides = [[1] * nd] + [[2] * nd] * (n - 1)
blocks, dec = args["blocks"][:n], [1] * (n - 1)
base = rss_kib()
if args["tool"] == "segkit":
    from toolkit.network.architecture import UNetSpec
    from toolkit.network.unet import build_network
    net = build_network(UNetSpec(1, 3, tuple(feats), tuple(map(tuple, kernels)), tuple(map(tuple, strides)), True,
                                 "residual_encoder_unet", tuple(blocks), tuple(dec)))
else:
    from torch import nn
    from dynamic_network_architectures.architectures.unet import ResidualEncoderUNet
    conv, norm = (nn.Conv3d, nn.InstanceNorm3d) if nd == 3 else (nn.Conv2d, nn.InstanceNorm2d)
    net = ResidualEncoderUNet(1, n, feats, conv, kernels, strides, blocks, 3, dec, conv_bias=True, norm_op=norm,
                              norm_op_kwargs={"eps": 1e-5, "affine": True}, nonlin=nn.LeakyReLU,
                              nonlin_kwargs={"inplace": True}, deep_supervision=True)
    net.apply(net.initialize)
opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.99, weight_decay=3e-5, nesterov=True)
x = torch.randn(args["batch"], 1, *args["patch"])
y = torch.randint(0, 3, (args["batch"], 1, *args["patch"])).float()

def step():
    opt.zero_grad(set_to_none=True)
    outs = net(x)
    loss = sum(F.cross_entropy(o, F.interpolate(y, size=o.shape[2:], mode="nearest")[:, 0].long()) for o in outs)
    loss.backward()
    opt.step()

for _ in range(args["warmup"]):
    step()
times = []
for _ in range(args["steps"]):
    t0 = time.perf_counter()
    step()
    times.append(time.perf_counter() - t0)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"step_s": statistics.median(times), "peak_rss_mib": (peak - base) / 1024,
                  "parameters": sum(p.numel() for p in net.parameters()), "outputs": len(net(x))}))
"""


def measure(tool: str, args: argparse.Namespace) -> dict:
    """One fresh subprocess of ``tool`` (segkit or peer)."""
    python = sys.executable if tool == "segkit" else str(peer_python())
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS=str(args.threads))
    payload = {"tool": tool, "patch": args.patch, "batch": args.batch, "stages": args.stages, "blocks": BLOCKS,
               "steps": args.steps, "warmup": args.warmup, "threads": args.threads}
    proc = subprocess.run([python, "-c", WORKER, json.dumps(payload)], capture_output=True, text=True, env=env,
                          check=False)
    if proc.returncode != 0:
        sys.exit(f"{tool} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--patch", type=int, nargs="+", default=[40, 56, 40])
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--stages", type=int, default=4)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    results: dict[str, list[dict]] = {"segkit": [], "nnunetv2": []}
    for r in range(args.repeats):
        for tool in ("segkit", "nnunetv2"):
            res = measure(tool, args)
            results[tool].append(res)
            print(f"repeat {r}: {tool:9s} {res['step_s']:.3f} s/step, peak RSS +{res['peak_rss_mib']:.0f} MiB, "
                  f"{res['parameters']} parameters, {res['outputs']} outputs", flush=True)
    ours, peer = results["segkit"], results["nnunetv2"]
    if ours[0]["parameters"] != peer[0]["parameters"]:
        sys.exit(f"different networks: {ours[0]['parameters']} vs {peer[0]['parameters']} parameters")
    t_ours, t_peer = (statistics.median(x["step_s"] for x in v) for v in (ours, peer))
    m_ours, m_peer = (statistics.median(x["peak_rss_mib"] for x in v) for v in (ours, peer))
    print(f"ResEnc M, patch {'x'.join(map(str, args.patch))}, batch {args.batch}, {args.stages} stages, "
          f"{args.threads} threads, fp32, medians of {args.repeats} x {args.steps} steps:")
    print(f"  step time: segkit {t_ours:.3f} s vs nnunetv2 {t_peer:.3f} s -> speed ratio {t_peer / t_ours:.2f}x")
    print(f"  peak RSS above imports: segkit {m_ours:.0f} MiB vs nnunetv2 {m_peer:.0f} MiB -> "
          f"ratio {m_ours / m_peer:.2f}")


if __name__ == "__main__":
    main()
