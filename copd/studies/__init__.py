"""The paper's studies beyond the main tables: the pilot (OPD gain vs overlap, Fig. 2a/b)
and the drift of experts vs CoPD branches (Fig. 2c/d, 4a/b).

    copd pilot ...     (copd/studies/pilot.py)
    copd drift ...     (copd/studies/drift.py)
"""

from __future__ import annotations


def add_parsers(sub) -> None:
    """Register `copd pilot` and `copd drift` on copd's subparsers (imports stay light)."""
    from copd.studies import drift, pilot

    pilot.add_parser(sub)
    drift.add_parser(sub)
