"""Static checks of a built image against grand-challenge's rules, on ``docker inspect`` data.

Pure functions: they take the inspect dict (and ``/etc/passwd`` of the image where the user must be
looked up) and return problem lines; an empty list means the image is acceptable. The rules: a
non-root ``USER`` that exists in ``/etc/passwd``, linux/amd64, an entrypoint, the segkit labels, the
invoke label and port for invoke-mode images, and a size under the upload limit (grand-challenge
takes ``docker save | gzip`` up to 10 GB; the uncompressed size is checked before export, the
compressed file after it).
"""

from __future__ import annotations

from typing import Any

from toolkit.containers.platform import DEFAULT_PORT

UPLOAD_LIMIT_BYTES = 10 * 1000**3
INVOKE_LABEL = ("org.grand-challenge.api-method", "invoke")
INVOKE_PORT = f"{DEFAULT_PORT}/tcp"
REQUIRED_LABELS = ("org.segkit.version", "org.segkit.bundle-sha256", "org.segkit.challenge")


def image_user(inspect: dict[str, Any]) -> str:
    return str((inspect.get("Config") or {}).get("User") or "")


def check_user(inspect: dict[str, Any], passwd: str | None = None) -> list[str]:
    """USER must be set, not root (by name or uid 0), and, when ``passwd`` is given, listed in it."""
    user = image_user(inspect)
    name = user.split(":")[0]
    if not name:
        return ["no USER set: the container would run as root (grand-challenge requires a non-root user)"]
    if name in ("root", "0"):
        return [f"USER is {user!r}: grand-challenge requires a non-root user"]
    if passwd is None:
        return []
    entries = {line.split(":")[0]: line.split(":")[2] for line in passwd.splitlines() if line.count(":") >= 2}
    if name.isdigit():
        if name not in entries.values():
            return [f"USER uid {name} has no /etc/passwd entry"]
        return []
    if name not in entries:
        return [f"USER {name!r} does not exist in /etc/passwd"]
    if entries[name] == "0":
        return [f"USER {name!r} has uid 0 (root)"]
    return []


def check_platform(inspect: dict[str, Any]) -> list[str]:
    arch, os_name = inspect.get("Architecture"), inspect.get("Os")
    problems = []
    if arch != "amd64":
        problems.append(f"architecture is {arch!r}; grand-challenge runs linux/amd64 images")
    if os_name != "linux":
        problems.append(f"OS is {os_name!r}; grand-challenge runs linux/amd64 images")
    return problems


def check_entrypoint(inspect: dict[str, Any]) -> list[str]:
    cfg = inspect.get("Config") or {}
    if not (cfg.get("Entrypoint") or cfg.get("Cmd")):
        return ["no ENTRYPOINT or CMD: the container would not run anything"]
    return []


def check_labels(inspect: dict[str, Any], mode: str) -> list[str]:
    cfg = inspect.get("Config") or {}
    labels = cfg.get("Labels") or {}
    problems = [f"label {k} is missing" for k in REQUIRED_LABELS if not labels.get(k)]
    invoke = labels.get(INVOKE_LABEL[0]) == INVOKE_LABEL[1]
    if mode == "invoke" and not invoke:
        problems.append(f"invoke mode needs the label {INVOKE_LABEL[0]}={INVOKE_LABEL[1]}")
    if mode == "invoke" and INVOKE_PORT not in (cfg.get("ExposedPorts") or {}):
        problems.append(f"invoke mode needs EXPOSE {INVOKE_PORT.split('/')[0]}")
    if mode == "run" and invoke:
        problems.append("run-once image carries the invoke label; grand-challenge would expect an HTTP server")
    return problems


def check_size(size_bytes: int, limit_bytes: int = UPLOAD_LIMIT_BYTES, what: str = "image") -> list[str]:
    if size_bytes > limit_bytes:
        return [f"{what} is {size_bytes / 1e9:.2f} GB, over the {limit_bytes / 1e9:.2f} GB upload limit"]
    return []


def static_problems(inspect: dict[str, Any], mode: str, passwd: str | None = None,
                    limit_bytes: int = UPLOAD_LIMIT_BYTES) -> list[str]:
    """Every rule at once (see the module docstring)."""
    return (check_user(inspect, passwd) + check_platform(inspect) + check_entrypoint(inspect)
            + check_labels(inspect, mode) + check_size(int(inspect.get("Size") or 0), limit_bytes))
