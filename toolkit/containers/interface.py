"""The grand-challenge interface of a packaged model: which socket holds which channel, where outputs go.

Pure rules, no I/O beyond reading ``inputs.json``. The challenge YAML's ``container`` section says

    inputs:  [{slug: flair-mri, channel: 0}, {slug: t1-mri, channel: 1}]   one socket per channel, or
             [{slug: medical-image, channels: all}]                         one socket holding every channel
    output:  {slug: kidney-segmentation, kind: segmentation}
    json_outputs: [{slug: lesion-volumes, value: volumes}]                  optional

(``relative_path`` may be given on any socket; grand-challenge's default is ``images/<slug>`` for
image sockets and ``<slug>.json`` for JSON sockets). :func:`resolve_interface` checks it against the
bundle's channels once, at packaging time, and the result is baked into the image as
``interface.json``: the container then needs neither the YAML nor the challenge adapters.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from toolkit.errors import SegkitError

IMAGE_SUFFIXES = (".mha", ".tif", ".tiff")
DICOM_SUFFIX = ".dcm"
DICOM_SET_KIND = "DICOM Image Set"  # the kind inputs.json gives a socket of kind DCMIS (its display name)
JSON_VALUES = ("volumes",)  # what a JSON output socket may carry


@dataclass(frozen=True)
class Socket:
    slug: str
    relative_path: str
    channels: tuple[int, ...] | None = None  # None: every channel of the model (one multi-channel image)
    value: str | None = None  # JSON outputs: what to write


@dataclass(frozen=True)
class Interface:
    challenge: str
    inputs: tuple[Socket, ...]
    output: Socket
    json_outputs: tuple[Socket, ...] = ()
    num_channels: int = 1
    labels: dict[str, int | list[int]] = field(default_factory=dict)  # name -> value, or a region's values

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Interface:
        def sock(s: dict[str, Any]) -> Socket:
            ch = s.get("channels")
            return Socket(s["slug"], s["relative_path"], tuple(ch) if ch is not None else None, s.get("value"))

        return cls(d["challenge"], tuple(sock(s) for s in d["inputs"]), sock(d["output"]),
                   tuple(sock(s) for s in d.get("json_outputs", [])), int(d["num_channels"]),
                   dict(d.get("labels", {})))


def _slug(entry: Any, where: str) -> str:
    if not isinstance(entry, dict) or not isinstance(entry.get("slug"), str) or not entry["slug"]:
        raise SegkitError(f"container.{where} needs a 'slug' string, got {entry!r}")
    return entry["slug"]


def _input_socket(entry: dict[str, Any], num_channels: int) -> Socket:
    slug = _slug(entry, "inputs")
    rel = entry.get("relative_path", f"images/{slug}")
    if entry.get("channels") == "all":
        return Socket(slug, rel, None)
    chans = entry.get("channels", [entry.get("channel")])
    if not isinstance(chans, list) or not all(isinstance(c, int) and 0 <= c < num_channels for c in chans):
        raise SegkitError(f"container input {slug!r}: channel(s) {chans!r} are not among the model's "
                          f"{num_channels} channel(s) 0..{num_channels - 1}")
    return Socket(slug, rel, tuple(chans))


def resolve_interface(challenge: str, container: dict[str, Any], dataset_json: dict[str, Any]) -> Interface:
    """Check a YAML ``container`` section against the model's dataset.json; raise one clear line if wrong."""
    if not container or "inputs" not in container or "output" not in container:
        raise SegkitError(f"challenge {challenge!r} has no container.inputs/output in its YAML; add them "
                          "(see challenges/README.md) or pass -O container.inputs=... -O container.output=...")
    n = len(dataset_json["channel_names"])
    inputs = tuple(_input_socket(e, n) for e in container["inputs"])
    if any(s.channels is None for s in inputs) and len(inputs) != 1:
        raise SegkitError("container input with 'channels: all' must be the only input socket")
    covered = sorted(c for s in inputs if s.channels is not None for c in s.channels)
    if inputs[0].channels is not None and covered != list(range(n)):
        raise SegkitError(f"container inputs give channels {covered}, the model takes exactly channels "
                          f"{list(range(n))} ({', '.join(dataset_json['channel_names'].values())})")
    out = container["output"]
    kind = out.get("kind", "segmentation") if isinstance(out, dict) else None
    if kind != "segmentation":
        raise SegkitError(f"challenge {challenge!r} output kind {kind!r} cannot be packaged: grand-challenge "
                          "takes one .mha per image socket; use -O container.output.kind=segmentation")
    slug = _slug(out, "output")
    output = Socket(slug, out.get("relative_path", f"images/{slug}"))
    json_outputs = []
    for e in container.get("json_outputs", []) or []:
        s = _slug(e, "json_outputs")
        if e.get("value") not in JSON_VALUES:
            raise SegkitError(f"container JSON output {s!r}: value must be one of {JSON_VALUES}, got {e.get('value')!r}")
        json_outputs.append(Socket(s, e.get("relative_path", f"{s}.json"), value=e["value"]))
    labels = {k: (int(v) if isinstance(v, int) else [int(x) for x in v]) for k, v in dataset_json["labels"].items()
              if k.lower() != "ignore" and not isinstance(v, bool)}
    return Interface(challenge, inputs, output, tuple(json_outputs), n, labels)


def read_inputs_json(input_dir: Path) -> list[dict[str, Any]]:
    """``/input/inputs.json`` as a list of socket values; a missing or malformed file is a clear error."""
    path = input_dir / "inputs.json"
    if not path.is_file():
        raise SegkitError("inputs.json not found: the job's inputs are not described", path)
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SegkitError(f"inputs.json cannot be read ({exc.strerror})", path) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise SegkitError(f"inputs.json is not valid JSON ({exc})", path) from None
    if not isinstance(entries, list) or not all(isinstance(e, dict) and isinstance(e.get("interface"), dict)
                                                for e in entries):
        raise SegkitError("inputs.json must be a list of {'interface': {'slug': ...}, ...} entries", path)
    return entries


def find_socket_image(input_dir: Path, entries: list[dict[str, Any]], socket: Socket) -> Path:
    """The input of an image socket, located by slug in inputs.json (else the default path): its one
    ``.mha`` file, or, for a DICOM image set (the platform writes ``<SOPInstanceUID>.dcm`` per instance),
    the socket folder holding the ``.dcm`` files."""
    rel, kind = socket.relative_path, None
    for e in entries:
        if e["interface"].get("slug") == socket.slug:
            rel, kind = e["interface"].get("relative_path") or rel, e["interface"].get("kind")
            break
    else:
        slugs = ", ".join(str(e["interface"].get("slug")) for e in entries) or "none"
        raise SegkitError(f"input socket {socket.slug!r} is not in inputs.json (it lists: {slugs})",
                          input_dir / "inputs.json")
    folder = (input_dir / rel).resolve()
    if input_dir.resolve() not in folder.parents:
        raise SegkitError(f"relative_path {rel!r} leaves the input folder", input_dir / "inputs.json")
    if not folder.is_dir():
        raise SegkitError(f"input socket {socket.slug!r}: folder not found", folder)
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    images = [p for p in files if p.name.lower().endswith(IMAGE_SUFFIXES)]
    dicom = [p for p in files if p.name.lower().endswith(DICOM_SUFFIX)]
    if dicom and not images:
        return folder
    if kind == DICOM_SET_KIND or len(images) != 1 or dicom:
        found = ", ".join(p.name for p in files[:5]) + (f" and {len(files) - 5} more" if len(files) > 5 else "")
        expected = "the .dcm files of a DICOM image set" if kind == DICOM_SET_KIND else \
            "exactly one .mha or .tif, or the .dcm files of a DICOM image set"
        raise SegkitError(f"input socket {socket.slug!r}: expected {expected}, found {found or 'nothing'}", folder)
    if not images[0].name.lower().endswith(".mha"):
        raise SegkitError("segkit models take 3D .mha images; .tif inputs are not supported", images[0])
    return images[0]


def gc_inputs_json(interface: Interface) -> list[dict[str, Any]]:
    """An ``inputs.json`` as grand-challenge writes it for this interface (used by self-tests)."""
    return [{"pk": i, "file": None, "value": None, "image": {"name": f"{s.slug}.mha"},
             "interface": {"slug": s.slug, "kind": "Image", "super_kind": "Image",
                           "relative_path": s.relative_path}}
            for i, s in enumerate(interface.inputs)]
