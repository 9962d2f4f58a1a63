"""`copd tag | note`: a run's tags and notes from the command line (the store's edit_tags
and set_notes; copd.common.tags says what they may hold).

    copd tag 3 +baseline -ablation         copd tag 3             # edit / show a run's tags
    copd note 3 "lr too high"              copd note 3 -a "more"  # replace / append its notes
"""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    """Add `copd tag` and `copd note` to copd's argparse subparsers."""
    p = subparsers.add_parser(
        "tag", help="add (+TAG or TAG) and remove (-TAG) a run's tags; no change: show them",
        usage="copd tag RUN [+TAG | TAG | -TAG ...] [--db URL]",
    )  # fmt: skip
    p.add_argument("run_id", type=int, metavar="RUN")
    # REMAINDER: a removal `-old` reads as an option to argparse; cmd_tag parses the changes
    p.add_argument("changes", nargs=argparse.REMAINDER, help="+TAG or TAG adds, -TAG removes")
    p.add_argument("--db", default=None, help="run store URL (default: $COPD_DB_URL or ~/.copd)")
    p.set_defaults(func=cmd_tag)

    p = subparsers.add_parser("note", help="set (or --append to) a run's notes; no text: show them")
    p.add_argument("run_id", type=int, metavar="RUN")
    p.add_argument("text", nargs="?", default=None, help='the notes ("" clears them)')
    p.add_argument("-a", "--append", metavar="TEXT", help="add TEXT as a new line instead")
    p.add_argument("--db", default=None, help="run store URL (default: $COPD_DB_URL or ~/.copd)")
    p.set_defaults(func=cmd_note)


def parse_tag_changes(changes: list[str]) -> tuple[list[str], list[str], str | None]:
    """`+a b -c --db URL` -> (add ["a", "b"], remove ["c"], db "URL"). Tags start with a
    letter or digit (copd.common.tags), so a leading +/- is always the edit's sign. A tag
    named twice takes its last sign, as the edits read left to right (`+x -x`: removed)."""
    signs: dict[str, bool] = {}  # tag -> added
    db = None
    items = iter(changes)
    for item in items:
        if item == "--":
            continue
        if item == "--db":
            db = next(items, None)
        elif item.startswith("--db="):
            db = item.removeprefix("--db=")
        elif item.startswith("-"):
            signs.pop(item[1:], None)
            signs[item[1:]] = False
        else:
            tag = item.removeprefix("+")
            signs.pop(tag, None)
            signs[tag] = True
    add = [t for t, added in signs.items() if added]
    return add, [t for t, added in signs.items() if not added], db


def cmd_tag(args: argparse.Namespace) -> int:
    from storage import RunStore

    add, remove, db = parse_tag_changes(args.changes)
    store = RunStore.from_url(db or args.db)
    run = store.edit_tags(args.run_id, add=add, remove=remove) if add or remove else None
    run = run or store.get_run(args.run_id)
    print(f"run {run.id}: {' '.join(run.tags) if run.tags else '(no tags)'}")
    return 0


def cmd_note(args: argparse.Namespace) -> int:
    from copd.spec import ConfigError
    from storage import RunStore

    if args.text is not None and args.append is not None:
        raise ConfigError("copd note: give the new notes or --append TEXT, not both")
    store = RunStore.from_url(args.db)
    if args.append is not None:
        run = store.set_notes(args.run_id, args.append, append=True)
    elif args.text is not None:
        run = store.set_notes(args.run_id, args.text)
    else:
        run = store.get_run(args.run_id)
    print(run.notes if run.notes else f"run {run.id}: (no notes)")
    return 0
