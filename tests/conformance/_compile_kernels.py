"""Compile int8 kernels' implementations and count their mnemonics, in a child process:
LLVM aborts the whole process (``LLVM ERROR: ...``, no exception) when a target's CPU
lacks a kernel's instructions, which must fail one test, not kill the test session.

stdin: a JSON list of ``[case_id, kernel_name, tvm_target]``; stdout: per case a line
``START case_id`` before its build and ``DONE case_id {mnemonic: count}`` after it."""

from __future__ import annotations

import json
import sys


def main() -> None:
    import tvm

    from pose_tuner.compile.kernels import count_instructions, get_kernel

    for case_id, name, target in json.load(sys.stdin):
        print("START", case_id, flush=True)
        k = get_kernel(name)
        impl = k.impl().with_attr("global_symbol", "main")
        mod = tvm.compile(tvm.IRModule({"main": impl}),
                          target=tvm.target.Target({**target, "num-cores": 1}))
        counts = {m: sum(count_instructions(mod, m).values()) for m in k.mnemonics}
        print("DONE", case_id, json.dumps(counts), flush=True)


if __name__ == "__main__":
    main()
