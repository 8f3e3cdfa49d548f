"""Intensity augmentations of docs/method.md 1.2 (steps 2-5 and 7) on one sample, in place where possible.

Semantics are batchgenerators v1's (which the previous loader composed), re-implemented on an
explicit generator: noise std U(0, 0.1) shared by all channels (v1 names it "variance"), blur
per channel with p 0.5 and an isotropic sigma U(0.5, 1.5) (separable Gaussian, scipy, reflect
borders, truncated at 4 sigma), brightness and contrast with one factor per channel, contrast then
clipped to the channel's range, gamma per channel on intensities rescaled to [0, 1] with mean and
std restored afterwards. Factors below and above 1 are equally likely (``draw_scale``).
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

from toolkit.training.transforms.spatial import draw_scale

GAMMA_EPS = 1e-7


def gaussian_noise(data: np.ndarray, rng: np.random.Generator, std_range: tuple[float, float]) -> np.ndarray:
    """Add zero-mean Gaussian noise, one std for all channels."""
    std = rng.uniform(*std_range)
    data += (rng.standard_normal(data.shape, dtype=np.float32) * np.float32(std))
    return data


def gaussian_blur(data: np.ndarray, rng: np.random.Generator, sigma_range: tuple[float, float],
                  p_per_channel: float) -> np.ndarray:
    """Blur each channel with probability ``p_per_channel`` (own sigma each)."""
    for c in range(data.shape[0]):
        if rng.uniform() <= p_per_channel:
            data[c] = gaussian_filter(data[c], rng.uniform(*sigma_range), order=0)
    return data


def brightness(data: np.ndarray, rng: np.random.Generator, factor_range: tuple[float, float]) -> np.ndarray:
    """Multiply each channel by its own factor."""
    for c in range(data.shape[0]):
        data[c] *= np.float32(rng.uniform(*factor_range))
    return data


def contrast(data: np.ndarray, rng: np.random.Generator, factor_range: tuple[float, float]) -> np.ndarray:
    """Scale each channel about its mean, then clip to the channel's original range."""
    for c in range(data.shape[0]):
        factor = np.float32(draw_scale(rng, *factor_range))
        ch = data[c]
        mean, low, high = ch.mean(), ch.min(), ch.max()
        ch -= mean
        ch *= factor
        ch += mean
        np.clip(ch, low, high, out=ch)
    return data


def gamma(data: np.ndarray, rng: np.random.Generator, gamma_range: tuple[float, float],
          invert: bool) -> np.ndarray:
    """Gamma per channel on [0, 1]-rescaled intensities (of the negated image when ``invert``),
    keeping each channel's mean and std."""
    sign = np.float32(-1 if invert else 1)
    for c in range(data.shape[0]):
        ch = data[c] * sign
        mean, std = ch.mean(), ch.std()
        g = draw_scale(rng, *gamma_range)
        low = ch.min()
        span = float(ch.max() - low) + GAMMA_EPS
        ch = np.power((ch - low) / np.float32(span), np.float32(g)) * np.float32(span) + low
        ch -= ch.mean()
        ch *= std / (ch.std() + 1e-8)
        ch += mean
        data[c] = ch * sign
    return data


def mirror(data: np.ndarray, seg: np.ndarray, rng: np.random.Generator, axes: tuple[int, ...],
           p_per_axis: float) -> tuple[np.ndarray, np.ndarray]:
    """Flip image and label together along each spatial axis in ``axes`` with ``p_per_axis``."""
    flip = tuple(1 + a for a in axes if rng.uniform() < p_per_axis)
    if flip:
        data, seg = np.flip(data, flip), np.flip(seg, flip)
    return data, seg
