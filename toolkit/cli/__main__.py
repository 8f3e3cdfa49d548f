"""``python -m toolkit.cli`` runs the segkit CLI (same as the ``segkit`` console script)."""

from toolkit.cli import main

if __name__ == "__main__":
    main()
