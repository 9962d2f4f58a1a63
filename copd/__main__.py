"""`python -m copd ...` is the same as the `copd` console script; `python -m copd standby`
is a trainer started before its run (copd/standby.py), which the launcher runs as
`python -m copd` with the run's arguments once it has them."""

import sys

from copd.cli import main

if __name__ == "__main__":
    if sys.argv[1:2] == ["standby"]:
        from copd.standby import receive

        job = receive()
        raise SystemExit(0 if job is None else main(job))
    raise SystemExit(main())
