"""Where the time of a compiled TVM artifact goes: its kernels, timed one call at a time.

    .venv/bin/python benchmarks/kernel_profile.py ARTIFACT.so [--runs 50] [--top 30]

Loads a CPU artifact of ``tuner search`` / ``tuner build`` (``tuner best`` gives its
``artifact_path``), runs ``main`` on a structured input, and times every call the Relax VM
makes (TVM kernels and the VM's own builtins) through the VM's instrument hook. Prints the
whole inference as ``time_evaluator`` sees it, then the kernels by total time per
inference and a summary by kind (convolutions, channel shuffles, layout packing, other
data movement, VM builtins).

The hook costs about a microsecond per call, so small kernels and builtins read high;
compare kernels with each other, and the whole with ``time_evaluator``'s figure.
"""

from __future__ import annotations

import argparse
import collections
import sys
import time

import _bootstrap  # noqa: E402,F401  (the repository on sys.path; TVM's threads)

#: (kind, words any of which in a kernel's name puts it there), checked in order
KINDS = (
    ("VM builtins", ("vm.builtin.",)),
    ("channel shuffle / concat", ("concatenate",)),
    ("convolutions", ("conv2d",)),
    ("resize (FPN)", ("resize",)),
    ("layout packing", ("pack_int8", "unpack_int8", "layout_transform")),
    ("(de)quantize", ("quantize",)),
)


def kind_of(name: str) -> str:
    for kind, words in KINDS:
        if any(w in name for w in words):
            return kind
    return "other"


def profile(vm, arg, runs: int) -> tuple[dict[str, float], collections.Counter]:
    """Seconds per name over ``runs`` inferences, and calls per name."""
    spent: dict[str, float] = collections.defaultdict(float)
    calls: collections.Counter = collections.Counter()
    start = [0.0]

    def instrument(func, name, before, ret, *args):
        if before:
            start[0] = time.perf_counter()
        else:
            spent[name] += time.perf_counter() - start[0]
            calls[name] += 1
        return 0  # VMInstrumentReturnKind.NO_OP: carry on

    vm.set_instrument(instrument)
    for _ in range(runs):
        vm["main"](arg)
    vm.set_instrument(None)
    return spent, calls


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("artifact", help="a CPU artifact (.so) of tuner search or tuner build")
    ap.add_argument("--input-shape", default="1x3x256x192",
                    help="the model's input, NxCxHxW (default: the zoo models' 1x3x256x192)")
    ap.add_argument("--runs", type=int, default=50, help="profiled inferences")
    ap.add_argument("--top", type=int, default=30, help="kernels to list")
    args = ap.parse_args()

    import tvm
    from tvm.runtime.vm import VirtualMachine

    from pose_tuner.measure.inputs import structured_input

    dev = tvm.cpu()
    vm = VirtualMachine(tvm.runtime.load_module(args.artifact), dev)
    shape = tuple(int(v) for v in args.input_shape.lower().split("x"))
    arg = tvm.runtime.tensor(structured_input(shape, seed=3), dev)
    for _ in range(10):  # warm-up
        vm["main"](arg)
    whole = vm.time_evaluator("main", dev, number=max(1, args.runs), repeat=3)(arg).median
    spent, calls = profile(vm, arg, args.runs)
    n = args.runs
    total = sum(spent.values())
    print(f"{args.artifact}: input {'x'.join(map(str, shape))}, {sum(calls.values()) // n} "
          f"calls per inference; time_evaluator {whole * 1e3:.3f} ms, the calls under the "
          f"instrument {total / n * 1e3:.3f} ms")
    print("\n| us per inference | calls | share | kernel |\n|---:|---:|---:|---|")
    for name, s in sorted(spent.items(), key=lambda kv: -kv[1])[:args.top]:
        print(f"| {s / n * 1e6:.1f} | {calls[name] // n} | {s / total:.1%} | {name} |")
    kinds: dict[str, float] = collections.defaultdict(float)
    for name, s in spent.items():
        kinds[kind_of(name)] += s
    print("\n| ms per inference | share | kind |\n|---:|---:|---|")
    for kind, s in sorted(kinds.items(), key=lambda kv: -kv[1]):
        print(f"| {s / n * 1e3:.3f} | {s / total:.1%} | {kind} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
