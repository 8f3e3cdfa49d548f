"""Inference: sliding-window prediction, fold ensembles, cascade, validation predictions.

Import the submodules directly (``toolkit.inference.sliding_window`` ...); this package imports no torch
at import time so that commands which run no network stay light.
"""
