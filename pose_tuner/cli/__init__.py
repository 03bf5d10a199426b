"""The `tuner` command line. Commands parse arguments and call library functions.

One module per command group, each holding its ``add_*_parser`` beside its ``cmd_*``:
``search``; ``query`` (pareto, best, compare, export: they read the database);
``nightly``; ``build``; ``device``; ``info`` (targets, models). ``parser`` assembles
them; ``common`` holds what several share. Heavy libraries load inside ``cmd_*`` only,
so ``tuner --help`` stays instant.
"""

from __future__ import annotations

import sys

from pose_tuner.cli.common import DEFAULT_LOG_DIR, UserError
from pose_tuner.cli.parser import build_parser

__all__ = ["DEFAULT_LOG_DIR", "UserError", "build_parser", "main"]


def _user_errors() -> tuple[type[Exception], ...]:
    """Errors that are the user's to fix: one line on stderr, exit 2."""
    from pose_tuner.search import SearchSpaceError
    from pose_tuner.hardware import TargetUnavailable, UnknownTarget

    from pose_tuner.store.db import DatabaseError
    from pose_tuner.models.source import ModelError
    from pose_tuner.nightly import NightlyConfigError, NightlyError
    from pose_tuner.store.pareto import NoCandidate
    from pose_tuner.search.config import SearchError

    return (UserError, SearchSpaceError, TargetUnavailable, UnknownTarget, ModelError,
            DatabaseError, NoCandidate, SearchError, NightlyConfigError, NightlyError)


def _stop_on_sigterm() -> None:
    import signal

    def _terminate(signum, frame):  # SIGTERM (a job scheduler) stops like Ctrl-C
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    user_errors = _user_errors()
    _stop_on_sigterm()
    try:
        return args.handler(args)
    except user_errors as exc:
        print(f"tuner: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tuner: interrupted" + ("; finished candidates are in the database"
                                      if args.command in ("search", "nightly") else ""),
              file=sys.stderr)
        return 130
