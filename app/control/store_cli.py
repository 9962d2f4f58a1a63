"""`copd store backup | check`: a copy of the SQLite run store, safe while runs write, and
its integrity check (storage/backup.py).

    copd store backup copd-backup.db                              # a copy, safe while runs write
    copd store check                                              # exit 1 when the store is damaged
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    """Add `copd store backup | check` to copd's argparse subparsers."""
    p = subparsers.add_parser("store", help="back up or check the run store (SQLite)")
    actions = p.add_subparsers(dest="store_cmd", required=True)
    b = actions.add_parser("backup", help="copy the store to OUT (safe while runs write)")
    b.add_argument("out", metavar="OUT", help="the new file to write the copy to")
    b.add_argument("--db", default=None, help="run store URL (default: $COPD_DB_URL or ~/.copd)")
    b.set_defaults(func=cmd_store_backup)
    c = actions.add_parser("check", help="PRAGMA integrity_check; exit 1 when damaged")
    c.add_argument("--db", default=None, help="run store URL (default: $COPD_DB_URL or ~/.copd)")
    c.set_defaults(func=cmd_store_check)


def cmd_store_backup(args: argparse.Namespace) -> int:
    from storage.backup import backup_store, store_file

    out = backup_store(args.db, Path(args.out))
    print(f"backed up {store_file(args.db)} to {out} (integrity_check: ok)")
    return 0


def cmd_store_check(args: argparse.Namespace) -> int:
    from storage.backup import check_store, store_file

    path = store_file(args.db)
    problems = check_store(args.db)
    if not problems:
        print(f"ok: {path}")
        return 0
    print(f"damaged: {path} ({len(problems)} problem(s)):", file=sys.stderr)
    for line in problems:
        print(f"  {line}", file=sys.stderr)
    print(
        "restore a copy made with `copd store backup`, or pass --db with a new store file",
        file=sys.stderr,
    )
    return 1
