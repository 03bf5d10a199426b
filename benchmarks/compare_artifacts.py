"""CPU artifacts of the same model timed side by side, in interleaved rounds of one process.

    .venv/bin/python benchmarks/compare_artifacts.py A.so B.so [C.so ...] [--rounds 7]

For comparing builds of one candidate (two tuning budgets or allocations, two versions of
the pipeline): loads every artifact, runs each on the same structured input, prints how far
each output is from the first artifact's (they should agree: same model, same
quantization), then times all of them in ``--rounds`` interleaved rounds (machine noise
hits them alike; each run uploads the input and copies the output back, alike for all) and
prints each one's median and its ratio to the first.
"""

from __future__ import annotations

import argparse
import statistics
import sys

import _bootstrap  # noqa: E402,F401  (the repository on sys.path; TVM's threads)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
    ap.add_argument("artifacts", nargs="+", help="artifact .so files of one model (first: the peer)")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--budget", type=float, default=2.0, help="seconds per artifact per round")
    ap.add_argument("--input-shape", default="1x3x256x192", help="NxCxHxW of the input")
    args = ap.parse_args(argv)

    import numpy as np

    from pose_tuner.measure.inputs import structured_input
    from pose_tuner.measure.runner import LocalVM, Timing, interleaved

    vms = {f"[{i}] {path}": LocalVM(path) for i, path in enumerate(args.artifacts)}
    first = next(iter(vms.values()))
    x = structured_input(tuple(int(v) for v in args.input_shape.lower().split("x")), seed=3)
    ref = first.run(x)
    span = float(ref.max() - ref.min()) or 1.0
    for name, vm in vms.items():
        err = float(np.abs(vm.run(x) - ref).max()) / span
        print(f"{name}: max |out - out[0]| = {err:.1e} of the output range")
    timing = Timing(budget_s=args.budget)
    samples = interleaved({n: (lambda vm=vm: vm.run(x)) for n, vm in vms.items()},
                          args.rounds, timing,
                          progress=lambda r: print(f"round {r}/{args.rounds}", file=sys.stderr))
    peer = statistics.median(next(iter(samples.values())))
    print(f"\n{'ms':>8}  {'ratio':>6}  artifact")
    for name, ms in samples.items():
        med = statistics.median(ms)
        print(f"{med:8.3f}  {med / peer:6.2f}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
