"""Preprocessing: crop to non-zero, normalise, resample; and the way back (export)."""
