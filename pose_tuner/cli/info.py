"""What the tuner knows without a database: ``tuner targets`` and ``tuner models``."""

from __future__ import annotations

import json


def add_targets_parser(sub) -> None:
    p = sub.add_parser("targets", help="list the known targets with their TVM target JSON")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_targets)


def add_models_parser(sub) -> None:
    p = sub.add_parser("models", help="list the built-in model zoo")
    p.set_defaults(handler=cmd_models)


def cmd_targets(args) -> int:
    from pose_tuner.hardware import HOST_ALIAS, TargetUnavailable, get_target, list_targets
    from pose_tuner.hardware.x86 import explain_host

    items = [t.describe() for t in list_targets()]
    try:
        resolved = get_target(HOST_ALIAS).name
    except TargetUnavailable:
        resolved = None
    if args.json:
        print(json.dumps({"aliases": {HOST_ALIAS: {"resolves_to": resolved,
                                                  "why": explain_host()}},
                          "targets": items}, indent=2))
    else:
        print(explain_host())
        for t in items:
            print(f"{t['name']:<11} {t['description']}\n{'':<11} {json.dumps(t['tvm_target'])}")
    return 0


def cmd_models(_args) -> int:
    from pose_tuner.models import zoo

    for name in zoo.list_models():
        print(f"{name:<20} {zoo.get_spec(name).description}")
    return 0
