"""Grand-challenge containers: the in-container entry points (algorithm job, invoke server, evaluation)
and the packager that builds, checks, self-tests and exports images (``segkit package``).

Nothing here imports torch or docker at import time.
"""
