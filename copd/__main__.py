"""`python -m copd ...` is the same as the `copd` console script."""

from copd.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
