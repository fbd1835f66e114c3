"""The ``ml-platform`` command: demo, preparation and model operations.

Heavy libraries are imported inside each command so ``ml-platform --help`` stays instant.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

Command = Callable[[argparse.Namespace], int | None]


def _cmd_demo(args: argparse.Namespace) -> int:
    from ml_platform.demo import run_demo

    return run_demo()


def _cmd_prepare(args: argparse.Namespace) -> int:
    from ml_platform.demo import prepare

    prepare()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ml-platform", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="run the whole platform end to end on embedded defaults")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("prepare", help="create DAGSTER_HOME and the dbt manifest (for `dagster dev`)")
    p.set_defaults(func=_cmd_prepare)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from ml_platform.runtime import quiet_telemetry

    quiet_telemetry()
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as exc:  # bad input: a clear message, no traceback
        print(f"ml-platform {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
