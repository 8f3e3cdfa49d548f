"""Challenge adapters."""
