"""Detect truncated NIfTI files, which ITK's NIfTI reader silently pads with zeros.

A half-downloaded ``.nii.gz`` would otherwise read as a valid image with a block of zeros and poison
training without any error. The header says how many bytes the file must hold
(``vox_offset + prod(dim) * bitpix / 8``); for gzip files the trailer's ISIZE field gives the
uncompressed length cheaply, and only when it disagrees (multi-member gzip, or truncation) is the
stream decompressed to count exactly.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from math import prod
from pathlib import Path

import numpy as np

_CHUNK = 1 << 20


class EmptyImage(Exception):
    """The header announces a dimension of size 0 (ITK would silently read it as size 1)."""


def _expected_nifti1_bytes(header: bytes) -> int | None:
    """Bytes a NIfTI-1 file must hold according to its header; None if not a NIfTI-1 header."""
    if len(header) < 348:
        return None
    for endian in "<>":
        if struct.unpack(endian + "i", header[:4])[0] == 348:
            dims = struct.unpack(endian + "8h", header[40:56])
            bitpix = struct.unpack(endian + "h", header[72:74])[0]
            vox_offset = struct.unpack(endian + "f", header[108:112])[0]
            n = dims[0]
            if not 1 <= n <= 7:
                return None
            if min(dims[1 : n + 1]) <= 0:
                raise EmptyImage(f"empty image (header size {list(dims[1 : n + 1])})")
            return int(vox_offset) + prod(dims[1 : n + 1]) * bitpix // 8
    return None


def _gzip_length(path: Path) -> int | None:
    """Uncompressed length of a gzip file, or None if the stream is truncated or corrupt."""
    total = 0
    try:
        with gzip.open(path, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                total += len(chunk)
    except (EOFError, OSError, zlib.error):
        return None
    return total


def nifti_truncation(path: Path) -> str | None:
    """A problem description if the NIfTI file is empty or holds fewer bytes than its header announces."""
    try:
        return _truncation(path)
    except EmptyImage as exc:
        return str(exc)


def _truncation(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith(".nii.gz"):
        try:
            with gzip.open(path, "rb") as fh:
                header = fh.read(348)
        except (EOFError, OSError, zlib.error):
            return "truncated or corrupt gzip stream"
        expected = _expected_nifti1_bytes(header)
        if expected is None:
            return None
        with open(path, "rb") as fh:
            fh.seek(-4, 2)
            isize = struct.unpack("<I", fh.read(4))[0]
        if isize == expected % 2**32:
            return None
        actual = _gzip_length(path)
        if actual is None:
            return "truncated file (gzip stream ends early)"
    elif name.endswith(".nii"):
        with open(path, "rb") as fh:
            header = fh.read(348)
        expected = _expected_nifti1_bytes(header)
        if expected is None:
            return None
        actual = path.stat().st_size
    else:
        return None
    if actual < expected:
        return f"truncated file ({actual} of {expected} bytes)"
    return None


_FLOAT_TYPES = {16: "f4", 64: "f8"}  # NIfTI datatype codes of float32 / float64


def nifti_nonfinite_count(path: Path) -> int:
    """Number of NaN/Inf voxels stored in a float NIfTI file.

    ITK's NIfTI reader replaces NaN by 0 on reading, so the array it returns cannot show them;
    ``verify`` reads the raw voxel bytes instead. Returns 0 for non-float or non-NIfTI files.
    """
    name = path.name.lower()
    if not (name.endswith(".nii") or name.endswith(".nii.gz")):
        return 0
    opener = gzip.open if name.endswith(".gz") else open
    with opener(path, "rb") as fh:
        header = fh.read(348)
        endian = "<" if struct.unpack("<i", header[:4])[0] == 348 else ">"
        datatype = struct.unpack(endian + "h", header[70:72])[0]
        if datatype not in _FLOAT_TYPES:
            return 0
        vox_offset = int(struct.unpack(endian + "f", header[108:112])[0])
        fh.read(max(vox_offset - 348, 0))
        dtype = np.dtype(endian + _FLOAT_TYPES[datatype])
        count, rest = 0, b""
        while chunk := fh.read(_CHUNK):
            chunk = rest + chunk
            usable = len(chunk) - len(chunk) % dtype.itemsize
            values = np.frombuffer(chunk[:usable], dtype)
            count += int(values.size - np.count_nonzero(np.isfinite(values)))
            rest = chunk[usable:]
    return count
