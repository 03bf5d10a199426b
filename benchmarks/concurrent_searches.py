"""Two `tuner search` runs started together on one machine, against one alone.

    .venv/bin/python benchmarks/concurrent_searches.py [--quant fp32,int8] [--size 128x96]

Three experiments on the same small space (default model, pruning 0, TVM's default
schedules, no baselines, no accuracy), each in fresh log folders so nothing is reused:

1. one search alone;
2. two searches started together, sharing the machine's timing lock (what every `tuner`
   process does);
3. two searches started together, each with its own lock folder (``PTUNER_LOCK_DIR``):
   the same experiment without the lock.

It prints, per point, the median latency of each run, its ratio to the run alone, and
whether the noise check flagged it (``!``), then the largest deviation of each
experiment. Nothing else should run on the machine meanwhile.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _search(logs: str, lock_dir: str, args) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "pose_tuner.cli", "search", "--target", args.target,
           "--log-dir", logs, "--model", args.model, "--input-size", args.size,
           "--prune", "0", "--quant", args.quant, "--schedules", "default",
           "--no-baselines", "--no-accuracy", "--measure-budget", str(args.budget)]
    env = {**os.environ, "PTUNER_LOCK_DIR": lock_dir}
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def _rows(logs: str) -> dict[str, tuple[float, bool]]:
    con = sqlite3.connect(os.path.join(logs, "pareto.sqlite"))
    try:
        got = con.execute("select quant, schedule, latency_median_ms, latency_noisy, status "
                          "from candidates where backend = 'tvm'").fetchall()
    finally:
        con.close()
    return {f"{q}-{s}": (ms, bool(noisy)) for q, s, ms, noisy, status in got if status == "ok"}


def _run(tmp: str, name: str, n: int, shared_lock: bool, args) -> list[dict]:
    t0 = time.time()
    procs, logs = [], []
    for i in range(n):
        log = os.path.join(tmp, f"{name}-{i}")
        lock = os.path.join(tmp, "lock" if shared_lock else f"lock-{name}-{i}")
        procs.append(_search(log, lock, args))
        logs.append(log)
    for p in procs:
        if p.wait() != 0:
            raise SystemExit(f"a search of experiment {name!r} failed (exit {p.returncode})")
    print(f"{name}: {n} search(es) in {time.time() - t0:.0f} s", flush=True)
    return [_rows(log) for log in logs]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", default="x86")
    ap.add_argument("--model", default="shufflenetv2_fpn")
    ap.add_argument("--size", default="128x96", help="input HxW")
    ap.add_argument("--quant", default="fp32,int8")
    ap.add_argument("--budget", type=float, default=3.0, help="seconds of timing per point")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="ptuner-concurrent-") as tmp:
        (alone,) = _run(tmp, "alone", 1, True, args)
        locked = _run(tmp, "together-locked", 2, True, args)
        unlocked = _run(tmp, "together-unlocked", 2, False, args)
    print(f"\n{'point':<22}{'alone ms':>10}" + "".join(
        f"{h:>16}" for h in ("locked A", "locked B", "unlocked A", "unlocked B")))
    worst = {"locked": 0.0, "unlocked": 0.0}
    for point, (ms, noisy) in sorted(alone.items()):
        cells = []
        for kind, runs in (("locked", locked), ("unlocked", unlocked)):
            for run in runs:
                other, flag = run.get(point, (None, False))
                if other is None:
                    cells.append(f"{'-':>16}")
                    continue
                ratio = other / ms
                worst[kind] = max(worst[kind], abs(ratio - 1))
                cells.append(f"{other:>8.2f}{'!' if flag else ' '}{ratio:>6.2f}x")
        print(f"{point:<22}{ms:>9.2f}{'!' if noisy else ' '}" + "".join(cells))
    print("\n! : flagged noisy by the timing's noise check")
    print(f"largest deviation from alone: with the lock {worst['locked'] * 100:.1f}%, "
          f"without it {worst['unlocked'] * 100:.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
