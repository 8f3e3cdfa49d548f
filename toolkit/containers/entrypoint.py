"""The algorithm container's entry point: ``python -m toolkit.containers.entrypoint [--mode run|invoke]``.

Run-once (default): one job from ``/input`` to ``/output``, then exit 0; any problem prints one line
``segkit: error: <path>: <problem>`` on stderr and exits 2 (bad input) or 1 (internal failure), so
grand-challenge marks the job failed instead of accepting an empty output.

Invoke (images labelled ``org.grand-challenge.api-method=invoke``): the model is loaded once, an HTTP
server on the port in ``GRAND_CHALLENGE_COMPONENT_USER_WEBSERVER_PORT`` (default 4743, as the
platform's shim reads it) answers ``GET /health`` (503 while loading, 200 when ready) and
``POST /invoke`` (runs one job from ``/input`` to ``/output``; 201 with a JSON summary, 400 for bad
input, 500 for an internal failure). The shim's POST has an empty body: it places each job's files in
``/input`` first, as in run-once mode. Jobs run one at a time.

Every summary (run-once: the JSON line on stdout; invoke: the 201 body) carries ``peak_rss_mb``, the
process's peak resident memory so far, which the self-test compares with the job's memory limit.

``/opt/segkit/settings.json`` (written by ``segkit package``) holds the interface, the bundle's
manifest checksum (a weights tarball mounted at ``/opt/ml/model`` must match it) and the predictor
settings (TTA, step).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from toolkit.containers.interface import Interface
from toolkit.containers.platform import DEFAULT_PORT, PORT_VARIABLE
from toolkit.errors import SegkitError

SETTINGS = Path("/opt/segkit/settings.json")
BUILTIN_BUNDLE = Path("/opt/segkit/bundle")
MOUNTED_BUNDLE = Path("/opt/ml/model")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def port_from_environment(environ: dict[str, str] | None = None) -> int:
    """The invoke server's port: the platform's variable, else its default 4743; a bad value is an error."""
    text = (os.environ if environ is None else environ).get(PORT_VARIABLE, "").strip()
    if not text:
        return DEFAULT_PORT
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise SegkitError(f"{PORT_VARIABLE}={text!r} is not a TCP port")
    return int(text)


def peak_rss_mb() -> float:
    """Peak resident memory of this process and its finished children, in MB (Linux reports KiB)."""
    return round(max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
                 / 1024, 1)


def find_bundle(explicit: Path | None) -> Path:
    """The bundle to run: explicit, else a weights tarball extracted to /opt/ml/model, else the built-in one."""
    if explicit is not None:
        return explicit
    for candidate in (MOUNTED_BUNDLE, BUILTIN_BUNDLE):
        if (candidate / "manifest.json").is_file():
            return candidate
    raise SegkitError("no model bundle: neither /opt/ml/model/manifest.json (weights tarball) nor the "
                      "built-in bundle exists", MOUNTED_BUNDLE)


def load_predictor(settings: dict[str, Any], bundle: Path, device: str):
    """Verify the bundle is the one packaged (manifest checksum), then load it (checksums of every file)."""
    from toolkit.bundle.manifest import sha256_of
    from toolkit.bundle.predictor import BundlePredictor

    expected = settings.get("bundle_manifest_sha256")
    if expected and sha256_of(bundle / "manifest.json") != expected:
        raise SegkitError("bundle manifest differs from the one this image was packaged with; "
                          "use the weights tarball made together with the image", bundle / "manifest.json")
    return BundlePredictor.from_bundle(bundle, device, bool(settings.get("tta", True)),
                                       float(settings.get("step", 0.5)))


def run_once(settings: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    from toolkit.containers.job import run_job

    interface = Interface.from_json(settings["interface"])
    predictor = load_predictor(settings, find_bundle(args.bundle), args.device)
    return run_job(predictor, interface, args.input, args.output)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    predictor: Any = None
    interface: Interface
    args: argparse.Namespace
    lock: threading.Lock


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def _reply(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        log(f"invoke: {self.address_string()} {format % args}")

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path.rstrip("/") != "/health":
            return self._reply(404, {"error": f"unknown path {self.path}"})
        if self.server.predictor is None:
            return self._reply(503, {"status": "loading"})
        self._reply(200, {"status": "ok"})

    def do_POST(self) -> None:  # noqa: N802
        from toolkit.containers.job import run_job

        if self.path.rstrip("/") != "/invoke":
            return self._reply(404, {"error": f"unknown path {self.path}"})
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)  # the body carries nothing segkit needs; drain it
        if self.server.predictor is None:
            return self._reply(503, {"status": "loading"})
        args = self.server.args
        with self.server.lock:
            try:
                result = run_job(self.server.predictor, self.server.interface, args.input, args.output)
            except SegkitError as exc:
                log(f"segkit: error: {exc}")
                return self._reply(400, {"status": "failed", "error": str(exc)})
            except Exception as exc:  # noqa: BLE001 - one job's failure must not stop the server
                log(f"segkit: internal error: {type(exc).__name__}: {exc}")
                return self._reply(500, {"status": "failed", "error": f"{type(exc).__name__}: {exc}"})
        log(f"invoke: job done in {result['seconds']:.2f} s")
        self._reply(201, {"status": "succeeded", **result, "peak_rss_mb": peak_rss_mb()})


def serve(settings: dict[str, Any], args: argparse.Namespace) -> None:
    """Answer /health at once (503 while the model loads), then serve /invoke until stopped."""
    server = _Server(("0.0.0.0", args.port), _Handler)
    server.interface = Interface.from_json(settings["interface"])
    server.args, server.lock = args, threading.Lock()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    log(f"invoke: listening on port {args.port}; loading the model")
    try:
        server.predictor = load_predictor(settings, find_bundle(args.bundle), args.device)
        log("invoke: model loaded, ready")
        thread.join()
    finally:
        server.shutdown()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="segkit-container", description=__doc__.split("\n")[0])
    p.add_argument("--mode", choices=("run", "invoke"), default=None, help="default: the packaged mode")
    p.add_argument("--settings", type=Path, default=SETTINGS)
    p.add_argument("--bundle", type=Path, default=None)
    p.add_argument("--input", type=Path, default=Path("/input"))
    p.add_argument("--output", type=Path, default=Path("/output"))
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--port", type=int, default=None, help=f"default: ${PORT_VARIABLE}, else {DEFAULT_PORT}")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        settings = json.loads(args.settings.read_text(encoding="utf-8"))
        mode = args.mode or settings.get("mode", "run")
        if mode == "invoke":
            args.port = args.port if args.port is not None else port_from_environment()
            serve(settings, args)
            return 0
        start = time.perf_counter()
        result = run_once(settings, args)
        log(f"segkit: case done in {time.perf_counter() - start:.2f} s (prediction {result['seconds']:.2f} s)")
        print(json.dumps({**result, "peak_rss_mb": peak_rss_mb()}), flush=True)
        return 0
    except SegkitError as exc:
        log(f"segkit: error: {exc}")
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - one line, then a failed job
        log(f"segkit: internal error: {type(exc).__name__}: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
