"""Building blocks of ``segkit package``: the Dockerfile, the wheelhouse, the Docker engine calls, export.

The engine is whatever ``DOCKER_HOST`` points at (dockerd, or podman's Docker-compatible socket),
driven by the ``docker`` Python SDK through the classic ``/build`` endpoint (no BuildKit, which Debian's
engine lacks). Wheels are downloaded on the host by pip for the base image's Python and glibc, so the
build itself needs no network. Only the packages inference imports go into the image, pinned to the
versions installed here, so that the container computes what ``segkit predict`` computes on the host.
"""

from __future__ import annotations

import gzip
import importlib.metadata as md
import json
import re
import shutil
import string
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

from toolkit import __version__
from toolkit.containers.platform import DEFAULT_PORT
from toolkit.errors import SegkitError
from toolkit.io.atomic import atomic_write_path

TEMPLATE = Path(__file__).with_name("Dockerfile.in")
DEFAULT_BASE_IMAGE = "python:3.11-slim-bookworm"
# distributions the in-container code imports (inference: torch; preprocessing: scipy, SimpleITK;
# postprocessing: cc3d); evaluation images need no torch
ALGORITHM_REQUIREMENTS = ("torch", "numpy", "scipy", "SimpleITK", "connected-components-3d", "tqdm")
EVALUATION_REQUIREMENTS = ("numpy", "scipy", "SimpleITK", "connected-components-3d", "tqdm")


def render_dockerfile(base_image: str, module: str, copy_bundle: bool, expose: bool,
                      command: str = "package", labels: dict[str, str] | None = None) -> str:
    """The Dockerfile for ``module`` as entry point (pure; see ``Dockerfile.in``)."""
    if not base_image or any(c.isspace() for c in base_image):
        raise SegkitError(f"invalid base image name {base_image!r}")
    label_line = "LABEL " + " ".join(f"{k}={json.dumps(str(v))}" for k, v in sorted((labels or {}).items()))
    return string.Template(TEMPLATE.read_text(encoding="utf-8")).substitute(
        command=command, version=__version__, base_image=base_image, module=module,
        labels=label_line if labels else "# no labels",
        copy_bundle="COPY bundle /opt/segkit/bundle" if copy_bundle else "# weights: separate tarball -> /opt/ml/model",
        expose=f"EXPOSE {DEFAULT_PORT}" if expose else "# run-once mode: no port")


def pinned_requirements(names: tuple[str, ...], device: str) -> list[str]:
    """``name==<installed version>`` for each; torch gets the CPU build's local label for ``cpu``."""
    reqs = []
    for name in names:
        try:
            version = md.version(name)
        except md.PackageNotFoundError:
            raise SegkitError(f"{name} is not installed here; install segkit's dependencies first") from None
        base = version.split("+")[0]
        if name == "torch":
            version = f"{base}+cpu" if device == "cpu" else base
        reqs.append(f"{name}=={version}")
    return reqs


def _pip(args: list[str], what: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-6:])
        raise SegkitError(f"{what} failed (pip exit {proc.returncode}):\n{tail}")


def manylinux_tags(glibc: str) -> list[str]:
    """Every manylinux tag a glibc ``2.N`` system accepts (pip does not expand ``--platform`` itself)."""
    major, minor = (int(v) for v in glibc.split(".")[:2])
    if major != 2 or minor < 17:
        raise SegkitError(f"glibc {glibc} is too old for manylinux2014 wheels (needs 2.17 or newer)")
    return ([f"manylinux_2_{m}_x86_64" for m in range(minor, 16, -1)]
            + ["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"])


def download_wheelhouse(dest: Path, requirements: list[str], python: str, glibc: str,
                        pip_args: tuple[str, ...] = ()) -> list[Path]:
    """Binary wheels of ``requirements`` and their dependencies for CPython ``python`` on glibc ``glibc``."""
    major, minor = python.split(".")[:2]
    platforms = [arg for tag in manylinux_tags(glibc) for arg in ("--platform", tag)]
    _pip(["download", "--quiet", "--dest", str(dest), "--only-binary=:all:", "--implementation", "cp",
          "--python-version", f"{major}.{minor}", *platforms, *pip_args, *requirements],
         "downloading the wheelhouse")
    return sorted(dest.glob("*.whl"))


def project_root() -> Path:
    root = Path(__file__).resolve().parents[2]
    if not (root / "pyproject.toml").is_file():
        raise SegkitError("segkit's source tree (pyproject.toml) is needed to build its wheel", root)
    return root


def build_project_wheel(dest: Path) -> Path:
    """segkit's own wheel, without dependencies (they come from the pinned wheelhouse)."""
    before = set(dest.glob("segkit-*.whl"))
    _pip(["wheel", "--quiet", "--no-deps", "--no-build-isolation", "--wheel-dir", str(dest), str(project_root())],
         "building the segkit wheel")
    made = sorted(set(dest.glob("segkit-*.whl")) - before) or sorted(dest.glob("segkit-*.whl"))
    if not made:
        raise SegkitError("pip wheel produced no segkit wheel", dest)
    # the build leaves build/ and *.egg-info in the source tree; they are not ours to keep
    shutil.rmtree(project_root() / "build", ignore_errors=True)
    return made[-1]


def readable_by_all(root: Path) -> None:
    """Files 0644, folders 0755 below ``root``: atomic writes make 0600 files, which an image's
    non-root user could not read (COPY and bind mounts keep the mode)."""
    for p in [root, *root.rglob("*")]:
        if not p.is_symlink():
            p.chmod(0o755 if p.is_dir() else 0o644)


def docker_client():
    """A client for the engine at DOCKER_HOST; a clear error when there is none."""
    import docker

    try:
        client = docker.from_env(timeout=600)
        client.ping()
    except Exception as exc:  # noqa: BLE001 - any connection failure means "no engine"
        raise SegkitError(f"no Docker engine reachable ({type(exc).__name__}); set DOCKER_HOST or start one "
                          "(containers/engine.sh start)") from None
    return client


def ensure_image(client, name: str) -> None:
    """Use a local image, or pull it; a clear error when neither works (e.g. no registry reachable)."""
    import docker

    try:
        client.images.get(name)
        return
    except docker.errors.ImageNotFound:
        pass
    try:
        client.images.pull(name)
    except Exception as exc:  # noqa: BLE001
        raise SegkitError(f"base image {name!r} is not present and cannot be pulled ({type(exc).__name__}); "
                          "build or load it first, or pass --base-image") from None


_PROBE = ("import json, platform, sys; print(json.dumps({'python': platform.python_version(), "
          "'glibc': platform.libc_ver()[1], 'machine': platform.machine()}))")


def probe_base(client, image: str) -> dict[str, str]:
    """Python version, glibc version and machine of the base image (the wheels must fit them)."""
    try:
        out = client.containers.run(image, ["python3", "-c", _PROBE], entrypoint=[], network_mode="none",
                                    remove=True, stdout=True, stderr=True)
    except Exception as exc:  # noqa: BLE001
        raise SegkitError(f"base image {image!r} has no working python3 ({type(exc).__name__}: {exc})") from None
    info = json.loads(out.decode().strip().splitlines()[-1])
    if info["machine"] != "x86_64":
        raise SegkitError(f"base image {image!r} is {info['machine']}; grand-challenge runs amd64 images")
    if not info["glibc"]:
        raise SegkitError(f"base image {image!r} has no glibc (musl images cannot use manylinux wheels)")
    return info


def build_image(client, context: Path, tag: str, log=None, keep_cache: bool = False) -> tuple[str, float]:
    """Classic-builder build of ``context``; returns (image id, seconds). Build errors end the package.

    Labels are written into the Dockerfile rather than passed to the API, which would append a step
    after the large layer (a full copy of the file system on vfs engines). Unless ``keep_cache``, the
    build's own intermediate images that the final image does not need (the install stage: a venv with
    torch, several GB on vfs engines) are removed afterwards, also when the build fails."""
    log = log or (lambda line: print(line, file=sys.stderr, flush=True))
    start = time.perf_counter()
    image_id, made = None, []
    try:
        for chunk in client.api.build(path=str(context), tag=tag, rm=True, forcerm=True,
                                      decode=True, pull=False):
            if "error" in chunk:
                raise SegkitError(build_error(client, chunk["error"]), context / "Dockerfile")
            stream = chunk.get("stream", "")
            if _STEP_IMAGE.match(stream):
                made.append(stream.split()[-1])
            if stream.strip():
                log(stream.rstrip())
            if "aux" in chunk and "ID" in chunk["aux"]:
                image_id = chunk["aux"]["ID"]
        if image_id is None:
            image_id = client.images.get(tag).id
    finally:
        if not keep_cache:
            _clean_up(client, made, tag if image_id else None, log)
    return image_id, time.perf_counter() - start


def _clean_up(client, made: list[str], tag: str | None, log) -> None:
    """Best effort: a clean-up failure (engine gone, say) is logged and never hides the build's outcome."""
    try:
        removed = drop_intermediates(client, made, tag)
    except Exception as exc:  # noqa: BLE001
        log(f"could not remove the intermediate build images ({type(exc).__name__}: {exc})")
        return
    if removed:
        log(f"removed {removed} intermediate build image(s) the final image does not use")


_STEP_IMAGE = re.compile(r"^ ---> [0-9a-f]{12}\s*$")


def build_error(client, message: str) -> str:
    """The engine's build error, with the remedy when its data root ran out of space."""
    text = f"docker build failed: {message.strip()}"
    if "no space left on device" in message:
        try:
            root = client.info().get("DockerRootDir", "the engine's data root")
        except Exception:  # noqa: BLE001
            root = "the engine's data root"
        text += (f" ({root} is full; `docker image prune` frees unused layers, and vfs engines keep a full"
                 " copy of the file system per layer)")
    return text


def drop_intermediates(client, image_ids: list[str], tag: str | None) -> int:
    """Remove the untagged images among ``image_ids`` that ``tag``'s history does not contain; returns how many
    removal calls succeeded. Leaves are removed first; the engine prunes their untagged parents with them.
    Tagged images (the base) and images other images still depend on are left alone."""
    from docker.errors import APIError

    keep = {h["Id"].split(":")[-1] for h in client.api.history(tag)} if tag else set()
    removed = 0
    for short in reversed(dict.fromkeys(image_ids)):
        if any(full.startswith(short) for full in keep):
            continue
        try:
            if client.api.inspect_image(short).get("RepoTags"):
                continue
            client.api.remove_image(short)
            removed += 1
        except APIError:  # already pruned with a child, or still a parent of another image
            continue
    return removed


def image_passwd(client, tag: str) -> str:
    """The image's /etc/passwd (to check that USER exists), read without running the entry point."""
    out = client.containers.run(tag, ["cat", "/etc/passwd"], entrypoint=[], user="0", network_mode="none",
                                remove=True, stdout=True, stderr=False)
    return out.decode()


def export_image(client, tag: str, out: Path, level: int = 6) -> int:
    """``docker save TAG | gzip`` into ``out`` atomically; returns the compressed size in bytes."""
    image = client.images.get(tag)
    with atomic_write_path(out, suffix=".tar.gz") as tmp, gzip.open(tmp, "wb", compresslevel=level) as gz:
        for chunk in image.save(named=True):
            gz.write(chunk)
    return out.stat().st_size


def weights_tarball(bundle: Path, out: Path) -> int:
    """The bundle's files at the root of a .tar.gz (grand-challenge extracts it to /opt/ml/model/)."""
    with atomic_write_path(out, suffix=".tar.gz") as tmp, tarfile.open(tmp, "w:gz") as tar:
        for p in sorted(bundle.rglob("*")):
            if p.is_file():
                tar.add(p, arcname=p.relative_to(bundle).as_posix(), recursive=False)
    return out.stat().st_size


def labels_for(challenge: str, manifest_sha: str, mode: str, extra: dict[str, Any] | None = None) -> dict[str, str]:
    labels = {"org.segkit.version": __version__, "org.segkit.bundle-sha256": manifest_sha,
              "org.segkit.challenge": challenge, "org.segkit.mode": mode}
    if mode == "invoke":
        labels["org.grand-challenge.api-method"] = "invoke"
    labels.update({k: str(v) for k, v in (extra or {}).items()})
    return labels
