"""Intensity augmentations of docs/method.md 1.2 (steps 2-5 and 7) on one sample, in place where possible.

Semantics are batchgenerators v1's (which the previous loader composed), re-implemented on an
explicit generator: noise std U(0, 0.1) shared by all channels (v1 names it "variance"), blur
per channel with p 0.5 and an isotropic sigma U(0.5, 1.5) (separable Gaussian, scipy, reflect
borders, truncated at 4 sigma), brightness and contrast with one factor per channel, contrast then
clipped to the channel's range, gamma per channel on intensities rescaled to [0, 1] with mean and
std restored afterwards. Factors below and above 1 are equally likely (``spatial.draw_scale``).
The functions take their drawn parameters explicitly (the pipeline in ``toolkit.training.augment``
draws them from its generator), so each one can be checked against batchgenerators on the same
parameters (tests/test_augmentation_reference.py).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.ndimage import gaussian_filter

GAMMA_EPS = 1e-7


def per_channel(rng: np.random.Generator, channels: int, p: float, draw: Callable[[], float],
                inclusive: bool = False) -> list[float | None]:
    """One parameter per channel, drawn with probability ``p`` (None: the channel is left alone);
    channel by channel the check, then the draw (batchgenerators v1's order; blur checks ``<= p``)."""
    out: list[float | None] = []
    for _ in range(channels):
        u = rng.uniform()
        out.append(draw() if (u <= p if inclusive else u < p) else None)
    return out


def gaussian_noise(data: np.ndarray, std: float, rng: np.random.Generator) -> np.ndarray:
    """Add zero-mean Gaussian noise of standard deviation ``std`` to every channel (field from ``rng``)."""
    data += (rng.standard_normal(data.shape, dtype=np.float32) * np.float32(std))
    return data


def gaussian_blur(data: np.ndarray, sigmas: list[float | None]) -> np.ndarray:
    """Blur channel c with an isotropic Gaussian of sigma ``sigmas[c]`` (None: not blurred)."""
    for c, sigma in enumerate(sigmas):
        if sigma is not None:
            data[c] = gaussian_filter(data[c], sigma, order=0)
    return data


def brightness(data: np.ndarray, factors: list[float]) -> np.ndarray:
    """Multiply channel c by ``factors[c]``."""
    for c, factor in enumerate(factors):
        data[c] *= np.float32(factor)
    return data


def contrast(data: np.ndarray, factors: list[float]) -> np.ndarray:
    """Scale channel c about its mean by ``factors[c]``, then clip to the channel's original range."""
    for c, factor in enumerate(factors):
        ch = data[c]
        mean, low, high = ch.mean(), ch.min(), ch.max()
        ch -= mean
        ch *= np.float32(factor)
        ch += mean
        np.clip(ch, low, high, out=ch)
    return data


def gamma(data: np.ndarray, gammas: list[float], invert: bool) -> np.ndarray:
    """Gamma ``gammas[c]`` on channel c's [0, 1]-rescaled intensities (of the negated image when
    ``invert``), keeping each channel's mean and std."""
    sign = np.float32(-1 if invert else 1)
    for c, g in enumerate(gammas):
        ch = data[c] * sign
        mean, std = ch.mean(), ch.std()
        low = ch.min()
        span = float(ch.max() - low) + GAMMA_EPS
        ch = np.power((ch - low) / np.float32(span), np.float32(g)) * np.float32(span) + low
        ch -= ch.mean()
        ch *= std / (ch.std() + 1e-8)
        ch += mean
        data[c] = ch * sign
    return data


def draw_flips(rng: np.random.Generator, axes: tuple[int, ...], p_per_axis: float) -> tuple[int, ...]:
    """The spatial axes among ``axes`` to flip, each with probability ``p_per_axis``."""
    return tuple(a for a in axes if rng.uniform() < p_per_axis)


def mirror(data: np.ndarray, seg: np.ndarray, flips: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Flip image and label together along the spatial axes ``flips`` (views, no copy)."""
    flip = tuple(1 + a for a in flips)
    if flip:
        data, seg = np.flip(data, flip), np.flip(seg, flip)
    return data, seg
