"""An emulated Raspberry Pi: aarch64 TVM RPC servers under qemu-user on this x86 machine.

For tests and for users without a board. ``prepare_root`` builds (once, cached per TVM
version) an arm64 Debian root with Python and the aarch64 wheels of this host's TVM and
ONNX Runtime; :class:`EmulatedPi` starts a tracker (unless one is given) and N of
pose-tuner's device servers (:mod:`pose_tuner.devices.device_server`: TVM's RPC server plus ONNX
Runtime) in that root, registered under the target's key, and stops them again. A
device served from this machine is recognised as emulated (:func:`pose_tuner.measure.rpc.pool_is_emulated`): its latencies
are marked ``emulated`` and never compete with a real Pi's.

Needs root (chroot), ``qemu-user-static`` + ``binfmt-support`` and ``debootstrap``
(Debian: ``apt-get install qemu-user-static binfmt-support debootstrap
g++-aarch64-linux-gnu``); building the root downloads about 250 MB and takes minutes.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version

#: what the device side needs besides TVM (pinned to this host's versions in ``device_pins``)
DEVICE_PACKAGES = ("numpy", "psutil", "cloudpickle", "tornado")
#: where pose-tuner's device server (:mod:`pose_tuner.devices.device_server`) lives in the root
SERVER_SCRIPT = "/opt/pose-tuner/device_server.py"
APT_HINT = ("apt-get install qemu-user-static binfmt-support debootstrap "
            "g++-aarch64-linux-gnu")


class EmulatorError(RuntimeError):
    """The emulated Pi cannot be prepared or started; the message says how to fix it."""


def emulator_dir() -> str:
    base = os.environ.get("POSE_TUNER_EMULATOR_DIR",
                          os.path.join(os.path.expanduser("~"), ".cache", "pose-tuner", "emulator"))
    return os.path.join(base, f"rasp4b-tvm{version('apache-tvm')}")


def root_dir() -> str:
    return os.path.join(emulator_dir(), "root")


def device_pins() -> list[str]:
    """The device's packages: this host's TVM, and its ONNX Runtime for the baselines."""
    pins = [f"apache-tvm=={version('apache-tvm')}",
            f"apache-tvm-ffi=={version('apache-tvm-ffi')}", *DEVICE_PACKAGES]
    try:
        pins.append(f"onnxruntime=={version('onnxruntime')}")
    except PackageNotFoundError:
        pass
    return pins


def is_ready() -> bool:
    """The root exists and holds exactly :func:`device_pins` (an older cache is updated)."""
    try:
        with open(os.path.join(emulator_dir(), "READY"), encoding="utf-8") as f:
            return f.read().split() == device_pins()
    except OSError:
        return False


def _run(cmd: list[str], say, what: str, timeout: float = 900) -> None:
    say(f"emulator: {what}")
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise EmulatorError(f"{what} took more than {timeout:.0f} s (network?); run again to "
                            "continue") from None
    if res.returncode != 0:
        tail = "\n".join((res.stdout + res.stderr).strip().splitlines()[-5:])
        raise EmulatorError(f"{what} failed ({' '.join(cmd[:3])} ...):\n{tail}")


def check_host() -> None:
    """Root, qemu's aarch64 binfmt handler and debootstrap are there (or say how)."""
    if os.geteuid() != 0:
        raise EmulatorError("the emulated Pi runs in a chroot: run this as root")
    binfmt = "/proc/sys/fs/binfmt_misc"
    if not os.path.exists(os.path.join(binfmt, "register")):
        subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", binfmt], capture_output=True)
    if not os.path.exists(os.path.join(binfmt, "qemu-aarch64")) and shutil.which("update-binfmts"):
        subprocess.run(["update-binfmts", "--enable", "qemu-aarch64"], capture_output=True)
    if not os.path.exists(os.path.join(binfmt, "qemu-aarch64")):
        raise EmulatorError(f"no qemu aarch64 handler in {binfmt}; install it: {APT_HINT}")
    for tool in ("debootstrap",):
        if shutil.which(tool) is None:
            raise EmulatorError(f"{tool} is not installed: {APT_HINT}")


def prepare_root(say: Callable[[str], None] = print) -> str:
    """The arm64 root with TVM's RPC server (built once per TVM version; about 10 min)."""
    root = root_dir()
    if is_ready():
        return root
    check_host()
    work = emulator_dir()
    os.makedirs(work, exist_ok=True)
    if not os.path.exists(os.path.join(root, "usr", "bin", "python3")):
        tmp = root + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        _run(["debootstrap", "--arch=arm64", "--variant=minbase",
              "--include=python3,python3-venv,libgomp1", "bookworm", tmp,
              "http://deb.debian.org/debian"], say,
             "debootstrap of an arm64 Debian bookworm root (3-8 minutes)", timeout=1800)
        shutil.rmtree(root, ignore_errors=True)
        os.replace(tmp, root)
    wheels = os.path.join(root, "opt", "wheels")
    pins = device_pins()
    _run([sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:",
          "--platform", "manylinux2014_aarch64", "--platform", "manylinux_2_28_aarch64",
          "--python-version", "3.11", "-d", wheels, *pins], say,
         "downloading the aarch64 wheels of " + ", ".join(p for p in pins if "==" in p))
    if not os.path.exists(os.path.join(root, "opt", "tvmenv", "bin", "python")):
        _run(["chroot", root, "python3", "-m", "venv", "/opt/tvmenv"], say,
             "creating the device's Python environment")
    _run(["chroot", root, "/opt/tvmenv/bin/pip", "install", "-q", "--no-index",
          "--find-links", "/opt/wheels", *pins], say,
         "installing TVM in the root (under emulation: a few minutes)")
    _run(["chroot", root, "/opt/tvmenv/bin/python", "-c",
          "import tvm, tvm.rpc" + (", onnxruntime" if any("onnxruntime" in p for p in pins) else "")],
         say, "checking that TVM imports on the emulated Pi")
    with open(os.path.join(work, "READY"), "w", encoding="utf-8") as f:
        f.write("\n".join(pins) + "\n")
    say(f"emulator: root ready at {root}")
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EmulatedPi:
    """Tracker (optional) plus ``servers`` aarch64 RPC servers under ``key``; a context
    manager that stops them all on exit."""

    def __init__(self, key: str = "rasp4b", servers: int = 1, tracker: str | None = None,
                 say: Callable[[str], None] = print, log_dir: str | None = None,
                 plain: bool = False):
        #: plain: TVM's own RPC server instead of pose-tuner's device server (no ONNX Runtime
        #: baselines on the device), as on a Pi set up with TVM's instructions only
        self.key, self.n, self.say, self.plain = key, servers, say, plain
        self.tracker = tracker
        self.log_dir = log_dir or os.path.join(emulator_dir(), "logs")
        self.procs: list[subprocess.Popen] = []

    def __enter__(self) -> "EmulatedPi":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _spawn(self, cmd: list[str], log: str) -> subprocess.Popen:
        os.makedirs(self.log_dir, exist_ok=True)
        out = open(os.path.join(self.log_dir, log), "a", encoding="utf-8")  # noqa: SIM115
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        self.procs.append(proc)
        return proc

    def start(self, timeout_s: float = 180.0) -> None:
        root = prepare_root(self.say)
        proc_dir = os.path.join(root, "proc")
        if not os.path.exists(os.path.join(proc_dir, "self")):
            subprocess.run(["mount", "-t", "proc", "proc", proc_dir], capture_output=True)
        if self.tracker is None:
            port = free_port()
            self._spawn([sys.executable, "-m", "tvm.exec.rpc_tracker", "--host", "127.0.0.1",
                         "--port", str(port), "--port-end", str(port + 1)], "tracker.log")
            self.tracker = f"127.0.0.1:{port}"
        from pose_tuner.measure.rpc import RPCError, RPCSpec, servers, tracker_summary

        spec = RPCSpec.parse(self.tracker, self.key)
        deadline = time.time() + 30
        while True:  # the tracker is up
            try:
                before = len(servers(tracker_summary(spec, timeout_s=2), self.key))
                break
            except RPCError:
                if time.time() > deadline:
                    raise EmulatorError(f"the RPC tracker at {self.tracker} did not start; "
                                        f"see {self.log_dir}/tracker.log") from None
                time.sleep(0.5)
        if self.plain:
            server = ["-m", "tvm.exec.rpc_server"]
        else:  # a fresh copy each start, so the device runs this host's version of it
            from pose_tuner.devices import device_server

            os.makedirs(os.path.dirname(root + SERVER_SCRIPT), exist_ok=True)
            shutil.copyfile(device_server.__file__, root + SERVER_SCRIPT)
            server = [SERVER_SCRIPT]
        for i in range(self.n):
            port = free_port()
            self._spawn(["chroot", root, "/opt/tvmenv/bin/python", *server,
                         "--host", "127.0.0.1", "--port", str(port), "--port-end", str(port + 1),
                         "--tracker", self.tracker, "--key", self.key],
                        f"server-{self.key}-{i}.log")
        self.say(f"emulator: starting {self.n} aarch64 RPC server(s) under qemu, key "
                 f"{self.key!r}, tracker {self.tracker}")
        deadline = time.time() + timeout_s
        while len(servers(tracker_summary(spec), self.key)) < before + self.n:
            dead = [p for p in self.procs if p.poll() is not None]
            if dead or time.time() > deadline:
                self.stop()
                raise EmulatorError(f"the emulated RPC servers did not register with the "
                                    f"tracker; see the logs in {self.log_dir}")
            time.sleep(1.0)
        self.say(f"emulator: ready: {self.n} device(s) under key {self.key!r} at {self.tracker}")

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                    proc.wait(10)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    try:
                        os.killpg(proc.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
        self.procs.clear()
