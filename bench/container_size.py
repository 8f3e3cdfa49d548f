"""Measure the grand-challenge image of a bundle: build time, image size, export size, time per case.

    python bench/container_size.py [--bundle BUNDLE --challenge NAME] [--base-image IMG] [--device cpu]
                                   [--cases DIR] [--out report.json]

Without ``--bundle`` a tiny phantom bundle is made (tests/bundle_helpers.py) and packaged for ``kits19``;
the engine is the one at DOCKER_HOST (start one with ``containers/engine.sh start``). Prints one JSON
report: build seconds, image bytes (uncompressed, as the engine reports it), the exported
``docker save | gzip`` bytes and seconds, the wheelhouse bytes, and per case the container's wall time
(start-up included) next to the host's ``segkit predict`` time on the same cases.
nnU-Net has no packager, so there is no peer to run side by side; the host prediction is the reference.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def _host_seconds(bundle: Path, cases: Path, tmp: Path, tta: bool) -> float:
    from toolkit.bundle.predictor import BundlePredictor
    from toolkit.inference.pipeline import predict_folder

    start = time.perf_counter()
    predictor = BundlePredictor.from_bundle(bundle, "cpu", tta)
    report = predict_folder(predictor, cases, tmp / "host", predictor.num_image_channels, progress=False)
    return (time.perf_counter() - start) / max(1, len(report.predicted))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bundle", type=Path)
    p.add_argument("--challenge", default="kits19")
    p.add_argument("--base-image", default="segkit-test-base:bookworm")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--cases", type=Path, help="canonical images <case>_<XXXX> for the self-test")
    p.add_argument("--no-tta", action="store_true")
    p.add_argument("--out", type=Path)
    args = p.parse_args()

    from challenges.registry import get_adapter
    from toolkit.containers.packager import PackageOptions, package

    with tempfile.TemporaryDirectory(prefix="segkit-bench-") as tmp_s:
        tmp = Path(tmp_s)
        bundle, cases = args.bundle, args.cases
        if bundle is None:
            from bundle_helpers import make_tiny_bundle

            from toolkit.phantom import make_phantom_dataset

            dataset = make_phantom_dataset(tmp / "data", n_train=4, n_test=2)
            bundle, cases = make_tiny_bundle(dataset, tmp), cases or dataset / "imagesTs"
        report = package(PackageOptions(
            bundle=bundle, challenge=args.challenge, container=get_adapter(args.challenge).container,
            tag="segkit-bench:latest", out=tmp / "image.tar.gz",
            test_input=cases, device=args.device, base_image=args.base_image, tta=not args.no_tta))
        if cases is not None:
            report["host_seconds_per_case"] = round(_host_seconds(bundle, cases, tmp, not args.no_tta), 2)
            st = report["self_test"]
            report["container_seconds_per_case"] = round(sum(r["seconds"] for r in st) / len(st), 2)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
