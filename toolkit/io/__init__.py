"""Image IO with exact geometry: arrays in (z, y, x) order plus spacing, origin and direction."""

from toolkit.io.atomic import atomic_write_json, atomic_write_path, read_json
from toolkit.io.images import (
    Geometry,
    read_case_images,
    read_geometry,
    read_image,
    register_format,
    supported_endings,
    write_image,
)

__all__ = [
    "Geometry",
    "atomic_write_json",
    "atomic_write_path",
    "read_case_images",
    "read_geometry",
    "read_image",
    "read_json",
    "register_format",
    "supported_endings",
    "write_image",
]
