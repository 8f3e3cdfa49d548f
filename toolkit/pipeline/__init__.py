"""The end-to-end pipeline (``segkit run``): each stage skips what is already finished."""
