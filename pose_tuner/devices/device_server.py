"""pose-tuner's RPC server for a device: TVM's RPC server plus ONNX Runtime baselines.

Run it on the device instead of ``python -m tvm.exec.rpc_server``, with the same
arguments::

    python3 pose_tuner_device_server.py --tracker HOST:9190 --key rasp4b

It is TVM's own server (``tvm.rpc.Server``) with a few extra functions registered through
its ``server_init_callback``, so the host can also measure ONNX Runtime on the device by
the same harness as TVM's artifacts: the host uploads the ONNX file, the device runs it
and times it with its own clock (no network in the figure), like ``time_evaluator``.

This file stands alone: it needs only ``apache-tvm`` (same version as the host), numpy,
and ``onnxruntime`` for the baselines (without it, TVM candidates still run and the host
records the ONNX Runtime baselines as skipped, with the reason). Get a copy with
``tuner device server-script --out pose_tuner_device_server.py``.

Functions (all names start with ``pose_tuner.``):

* ``info() -> str``: JSON with this helper's version, ONNX Runtime's version (or null),
  the machine and CPU count;
* ``ort_load(file, threads) -> str``: an ONNX Runtime CPU session of an uploaded file;
* ``ort_run(file, x) -> Tensor``: its first output for input ``x``;
* ``ort_time(file, x, number, repeat) -> str``: JSON list of ``repeat`` mean seconds per
  run, each over ``number`` runs (``time_evaluator``'s statistics);
* ``rss() -> int``: the session process's resident set in bytes (peak memory).
"""

from __future__ import annotations

import argparse
import logging
import signal

#: bumped when the functions below change; the host refuses an older helper
#: (:data:`pose_tuner.measure.rpc.HELPER_VERSION`). This file runs on devices as a
#: standalone script, so it imports nothing of pose_tuner.
HELPER_VERSION = 1


def register_functions() -> None:
    """Register the ``pose_tuner.*`` functions in this process (the server's init callback;
    each session is forked from it, so every session sees them)."""
    import json
    import os
    import platform
    import time

    import tvm
    import tvm_ffi

    sessions: dict = {}

    def _path(file_name: str) -> str:
        if os.path.isabs(file_name):
            return file_name
        return tvm_ffi.get_global_func("tvm.rpc.server.workpath")(file_name)

    @tvm_ffi.register_global_func("pose_tuner.info", override=True)
    def info() -> str:
        try:
            import onnxruntime

            ort_version = onnxruntime.__version__
        except ImportError:
            ort_version = None
        return json.dumps({"helper": HELPER_VERSION, "onnxruntime": ort_version,
                           "tvm": tvm.__version__, "machine": platform.machine(),
                           "cpus": os.cpu_count()})

    @tvm_ffi.register_global_func("pose_tuner.rss", override=True)
    def rss() -> int:
        """This session process's resident set in bytes (peak memory of an artifact)."""
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    @tvm_ffi.register_global_func("pose_tuner.ort_load", override=True)
    def ort_load(file_name: str, threads: int) -> str:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
        sess = ort.InferenceSession(_path(file_name), opts, providers=["CPUExecutionProvider"])
        sessions[file_name] = (sess, sess.get_inputs()[0].name)
        return file_name

    def _call(file_name: str, x):
        sess, name = sessions[file_name]
        return sess.run(None, {name: x})[0]

    @tvm_ffi.register_global_func("pose_tuner.ort_run", override=True)
    def ort_run(file_name: str, x):
        return tvm.runtime.tensor(_call(file_name, x.numpy()))

    @tvm_ffi.register_global_func("pose_tuner.ort_time", override=True)
    def ort_time(file_name: str, x, number: int, repeat: int) -> str:
        arr = x.numpy()
        out = []
        for _ in range(int(repeat)):
            t = time.perf_counter()
            for _ in range(int(number)):
                _call(file_name, arr)
            out.append((time.perf_counter() - t) / int(number))
        return json.dumps(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on")
    parser.add_argument("--port", type=int, default=9090, help="first port to try")
    parser.add_argument("--port-end", type=int, default=9199, help="last port to try")
    parser.add_argument("--tracker", required=True, help="the RPC tracker, HOST:PORT")
    parser.add_argument("--key", default="rasp4b", help="the device key (default rasp4b)")
    parser.add_argument("--custom-addr", help="address to report to the tracker")
    parser.add_argument("--silent", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    from tvm import rpc

    host, _, port = args.tracker.rpartition(":")
    server = rpc.Server(args.host, args.port, args.port_end, key=args.key,
                        tracker_addr=(host, int(port)), custom_addr=args.custom_addr,
                        silent=args.silent, server_init_callback=register_functions)
    logging.info("pose-tuner device server (helper v%d) on port %s, key %s, tracker %s",
                 HELPER_VERSION, server.port, args.key, args.tracker)

    def stop(*_):  # the server runs in a worker process: take it down with this one
        server.terminate()
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    try:
        server.proc.join()
    finally:
        server.terminate()


if __name__ == "__main__":
    main()
