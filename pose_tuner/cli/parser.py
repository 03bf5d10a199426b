"""The top-level ``tuner`` parser: one ``add_*_parser`` per command, in the order of
``tuner --help``. Each binds its command function as ``handler``."""

from __future__ import annotations

import argparse

from pose_tuner.cli.build import add_build_parser
from pose_tuner.cli.device import add_device_parser
from pose_tuner.cli.info import add_models_parser, add_targets_parser
from pose_tuner.cli.nightly import add_nightly_parser
from pose_tuner.cli.query import (add_best_parser, add_compare_parser, add_export_parser,
                                  add_pareto_parser)
from pose_tuner.cli.search import add_search_parser

ADDERS = (add_search_parser, add_pareto_parser, add_best_parser, add_compare_parser,
          add_export_parser, add_nightly_parser, add_build_parser, add_device_parser,
          add_targets_parser, add_models_parser)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tuner", description="Auto-tune pose-estimation models with TVM for one target.")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in ADDERS:
        add(sub)
    return parser
