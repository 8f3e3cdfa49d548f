"""Preprocessed storage: memory-mapped .npy (segkit's choice) vs blosc2 .b2nd (nnU-Net v2's format).

What the trainer does with the files is random patch reads, so that is what is timed: for each
format, write a case (time, size), then read random patches, once with the file's pages dropped
from the page cache (``posix_fadvise(DONTNEED)``, no root needed: "cold", as after a reboot or on a
dataset larger than RAM) and once warm. Formats alternate per repetition (A B A B), medians reported.
blosc2 uses nnU-Net's settings: ZSTD, clevel 8, blocks sized for L1 and chunks for L3, both
shaped like the patch.

Data: the real Task04_Hippocampus (z-scored raw images, patch 40x56x40) and a synthetic CT-like
300x512x512 case (smooth anatomy + noise, patch 128^3).

blosc2 is not a segkit dependency, so run this with the peer venv's python, which has it:
    bench/.peer-venv/bin/python bench/storage_formats.py [--hippo-cases 20] [--patches 30]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from toolkit.preprocessing.storage import load_case, save_case  # noqa: E402

HIPPO = REPO.parent / "shared" / "data" / "Task04_Hippocampus"


def blosc_params(shape, patch, itemsize, l1=32768, l3=1441792, safety=0.8):
    """(blocks, chunks) shaped like the patch: blocks within L1, chunks within L3 (nnU-Net's idea)."""
    def fit(budget):
        size = [min(2 ** max(0, math.floor(math.log2(p))), s) for p, s in zip(patch, shape[1:], strict=True)]
        while np.prod(size) * shape[0] * itemsize > budget * safety:
            axis = int(np.argmax(np.asarray(size) / np.asarray(patch)))
            size[axis] = max(1, size[axis] // 2)
        return (shape[0], *size)
    return fit(l1), fit(l3)


def save_blosc(folder: Path, case: str, data, seg, patch):
    import blosc2

    cparams = {"codec": blosc2.Codec.ZSTD, "clevel": 8}
    for suffix, arr in (("", data), ("_seg", seg)):
        blocks, chunks = blosc_params(arr.shape, patch, arr.itemsize)
        blosc2.asarray(np.ascontiguousarray(arr), urlpath=str(folder / f"{case}{suffix}.b2nd"),
                       chunks=chunks, blocks=blocks, cparams=cparams, mode="w")


def open_blosc(folder: Path, case: str):
    import blosc2

    return (blosc2.open(str(folder / f"{case}.b2nd"), mode="r", mmap_mode="r"),
            blosc2.open(str(folder / f"{case}_seg.b2nd"), mode="r", mmap_mode="r"))


def drop_cache(folder: Path) -> None:
    for path in folder.iterdir():
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def random_slices(shape, patch, rng):
    starts = [int(rng.integers(0, max(1, s - p + 1))) for s, p in zip(shape, patch, strict=True)]
    return tuple(slice(a, a + p) for a, p in zip(starts, patch, strict=True))


def read_patches(fmt: str, folder: Path, cases: list[str], patch, n: int, seed: int) -> float:
    """Seconds per patch (data + seg) over ``n`` random patches from random cases."""
    rng = np.random.default_rng(seed)
    t = time.perf_counter()
    for _ in range(n):
        case = cases[int(rng.integers(len(cases)))]
        if fmt == "npy":
            data, seg, _ = load_case(folder, case, mmap=True)
        else:
            data, seg = open_blosc(folder, case)
        sl = random_slices(data.shape[1:], patch, rng)
        np.asarray(data[(slice(None), *sl)]).sum()
        np.asarray(seg[(slice(None), *sl)]).sum()
    return (time.perf_counter() - t) / n


def hippocampus_cases(n: int):
    import SimpleITK as sitk

    files = sorted((HIPPO / "imagesTr").glob("*.nii.gz"))[:n]
    for f in files:
        img = sitk.GetArrayFromImage(sitk.ReadImage(str(f))).astype(np.float32)
        seg = sitk.GetArrayFromImage(sitk.ReadImage(str(HIPPO / "labelsTr" / f.name))).astype(np.int16)
        yield f.name[:-7], ((img - img.mean()) / max(img.std(), 1e-8))[None], seg[None]


def ct_case(shape=(300, 512, 512), seed=0):
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    coarse = rng.normal(size=tuple(s // 16 + 1 for s in shape)).astype(np.float32)
    anatomy = ndimage.zoom(coarse, 16, order=1)[: shape[0], : shape[1], : shape[2]]
    data = (anatomy + 0.3 * rng.normal(size=shape).astype(np.float32))[None]
    seg = (anatomy > 1.0).astype(np.int16) + (anatomy > 2.0)
    yield "ct000", data, seg[None]


def bench(name, cases_iter, patch, patches: int, repeats: int, root: Path) -> None:
    folders = {fmt: root / f"{name}_{fmt}" for fmt in ("npy", "blosc2")}
    write_s = {"npy": 0.0, "blosc2": 0.0}
    ids = []
    for case, data, seg in cases_iter:
        ids.append(case)
        for fmt, folder in folders.items():
            folder.mkdir(exist_ok=True)
            t = time.perf_counter()
            if fmt == "npy":
                save_case(folder, case, data, seg, {})
            else:
                save_blosc(folder, case, data, seg, patch)
            write_s[fmt] += time.perf_counter() - t
    cold = {f: [] for f in folders}
    warm = {f: [] for f in folders}
    for r in range(repeats):  # A B A B
        for fmt, folder in folders.items():
            drop_cache(folder)
            cold[fmt].append(read_patches(fmt, folder, ids, patch, patches, seed=r))
            warm[fmt].append(read_patches(fmt, folder, ids, patch, patches, seed=r))
    print(f"\n{name}: {len(ids)} case(s), patch {'x'.join(map(str, patch))}, {patches} patches x {repeats} repeats")
    for fmt, folder in folders.items():
        size = sum(p.stat().st_size for p in folder.iterdir()) / 2**20
        print(f"  {fmt:7s} write {write_s[fmt]:7.2f} s  size {size:8.1f} MiB  "
              f"cold read {1e3 * statistics.median(cold[fmt]):8.2f} ms/patch  "
              f"warm read {1e3 * statistics.median(warm[fmt]):8.2f} ms/patch")
    ratio = statistics.median(cold["blosc2"]) / statistics.median(cold["npy"])
    ratio_w = statistics.median(warm["blosc2"]) / statistics.median(warm["npy"])
    print(f"  blosc2/npy read time: cold {ratio:.2f}x, warm {ratio_w:.2f}x (>1: npy faster)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hippo-cases", type=int, default=20)
    ap.add_argument("--patches", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="segkit-storage-") as tmp:
        if HIPPO.is_dir():
            bench("hippocampus", hippocampus_cases(args.hippo_cases), (40, 56, 40), args.patches, args.repeats,
                  Path(tmp))
        bench("ct300x512x512", ct_case(), (128, 128, 128), args.patches, args.repeats, Path(tmp))


if __name__ == "__main__":
    main()
