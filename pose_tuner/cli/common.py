"""Helpers several commands share: the error type, ``--target/--log-dir/--db`` and
``--cuda-arch``."""

from __future__ import annotations

import argparse
import os

DEFAULT_LOG_DIR = os.environ.get("POSE_TUNER_LOG_DIR", "logs")


class UserError(Exception):
    pass


def add_common(p: argparse.ArgumentParser, target_required: bool = True) -> None:
    p.add_argument("--target", required=target_required, help="hardware target (see `tuner targets`)")
    p.add_argument("--log-dir", default=DEFAULT_LOG_DIR,
                   help="where the database, tuning records, artifacts and logs go (default: logs)")
    p.add_argument("--db", default=None,
                   help="SQLAlchemy database URL (default: sqlite under --log-dir)")


def cuda_arch(text: str) -> str:
    """The argparse type of ``--cuda-arch``."""
    from pose_tuner.hardware.cuda import valid_arch

    if not valid_arch(text):
        raise argparse.ArgumentTypeError(f"expected an architecture like sm_86 or sm_90, got {text!r}")
    return text


def cuda_arch_for(target: str, arch: str | None) -> None:
    """``--cuda-arch`` only goes with a target that takes a GPU architecture."""
    from pose_tuner.hardware import targets_with_option

    takes = targets_with_option("arch")
    if arch and target not in takes:
        raise UserError(f"--cuda-arch applies to --target {' or '.join(takes)} only")
