"""``tuner device``: devices of remote targets (an emulated Raspberry Pi, the server script)."""

from __future__ import annotations

import os
import sys

from pose_tuner.cli.common import UserError


def add_device_parser(sub) -> None:
    p = sub.add_parser("device", help="devices of remote targets: an emulated Raspberry Pi")
    dsub = p.add_subparsers(dest="device_command", required=True)
    _add_emulate_parser(dsub)
    _add_server_script_parser(dsub)
    p.set_defaults(handler=cmd_device)


def _add_emulate_parser(dsub) -> None:
    e = dsub.add_parser("emulate", help="start aarch64 TVM RPC servers under qemu (an emulated "
                                        "Pi) registered with a tracker; runs until Ctrl-C")
    e.add_argument("target", choices=("rasp4b",), help="the target to emulate")
    e.add_argument("--tracker", default=None,
                   help="register with this tracker HOST:PORT (default: start one on this machine)")
    e.add_argument("--key", default="rasp4b", help="RPC key (default: rasp4b)")
    e.add_argument("--servers", type=int, default=1, help="emulated devices (a pool; default 1)")
    e.add_argument("--prepare-only", action="store_true",
                   help="only build the cached arm64 root (minutes, once per TVM version)")
    e.add_argument("--plain-tvm-server", action="store_true",
                   help="run TVM's own RPC server, as a Pi set up with TVM's steps only (no "
                        "ONNX Runtime baselines on the device)")


def _add_server_script_parser(dsub) -> None:
    s = dsub.add_parser("server-script",
                        help="pose-tuner's RPC server for a device (TVM's server plus ONNX Runtime "
                             "baselines): copy it to the Pi and run it there")
    s.add_argument("--out", default=None, help="write it to this file (default: print it)")


def cmd_device(args) -> int:
    if args.device_command == "server-script":
        return _server_script(args)
    return _emulate(args)


def _server_script(args) -> int:
    from pose_tuner.devices import device_server

    with open(device_server.__file__, encoding="utf-8") as f:
        text = f.read()
    if args.out is None:
        sys.stdout.write(text)
    else:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text)
        print(f"wrote {args.out}; on the device: python3 {os.path.basename(args.out)} "
              "--tracker HOST:9190 --key rasp4b", file=sys.stderr)
    return 0


def _emulate(args) -> int:
    from pose_tuner.devices.emulator import EmulatorError, prepare_root

    say = lambda m: print(m, flush=True)  # noqa: E731
    try:
        if args.prepare_only:
            print(prepare_root(say))
            return 0
        if args.servers <= 0:
            raise UserError(f"--servers must be > 0, got {args.servers}")
        return _run_emulated(args, say)
    except EmulatorError as exc:
        raise UserError(str(exc)) from None


def _run_emulated(args, say) -> int:
    """Runs the emulated Pis until one stops (1) or Ctrl-C."""
    import time

    from pose_tuner.devices.emulator import EmulatedPi

    with EmulatedPi(args.key, args.servers, args.tracker, say,
                    plain=args.plain_tvm_server) as pi:
        print(f"use it with: tuner search --target {args.target} --tracker {pi.tracker}"
              + (f" --rpc-key {args.key}" if args.key != "rasp4b" else "")
              + "   (Ctrl-C here stops the emulated devices)", flush=True)
        while all(p.poll() is None for p in pi.procs):
            time.sleep(1.0)
        print("tuner: an emulated device stopped; see its log", file=sys.stderr)
        return 1
