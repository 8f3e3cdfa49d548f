"""Self-contained inference bundles: the selected configurations' folds + postprocessing + manifest."""

from toolkit.bundle.make import make_bundle
from toolkit.bundle.manifest import BUNDLE_MANIFEST, is_bundle, verify_bundle

__all__ = ["BUNDLE_MANIFEST", "is_bundle", "make_bundle", "verify_bundle"]
