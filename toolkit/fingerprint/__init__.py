"""Dataset fingerprint (docs/method.md 1.1): geometry, cropping and foreground intensities of the training set."""

from toolkit.fingerprint.extract import DEFAULT_SEED, assemble, compute_fingerprint, default_jobs

__all__ = ["DEFAULT_SEED", "assemble", "compute_fingerprint", "default_jobs"]
