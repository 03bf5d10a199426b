import contextlib
import os

import numpy as np
import pytest


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory):
    """A small conv + deconv heatmap model with non-trivial weights, as ONNX."""
    import torch

    torch.manual_seed(0)

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = torch.nn.Conv2d(3, 16, 3, 2, 1)
            self.bn = torch.nn.BatchNorm2d(16)
            self.dw = torch.nn.Conv2d(16, 16, 3, 1, 1, groups=16)
            self.pw = torch.nn.Conv2d(16, 24, 1)
            self.de = torch.nn.ConvTranspose2d(24, 16, 4, 2, 1, bias=False)
            self.out = torch.nn.Conv2d(16, 5, 1)

        def forward(self, x):
            x = torch.nn.functional.relu6(self.bn(self.c1(x)))
            x = torch.relu(self.pw(self.dw(x)))
            return self.out(torch.relu(self.de(x)))

    m = Tiny().eval()
    with torch.no_grad():
        m.bn.running_mean.uniform_(-0.2, 0.2)
        m.bn.running_var.uniform_(0.5, 1.5)
    path = tmp_path_factory.mktemp("tiny") / "tiny.onnx"
    torch.onnx.export(m, (torch.randn(1, 3, 32, 32),), str(path), input_names=["input"],
                      output_names=["heatmaps"], opset_version=17, dynamo=False)
    return str(path)


def tiny_pose(act=None):
    """A tiny pose model (torch, eval mode): conv+BN+``act`` twice at stride 2, then 17
    heatmaps at stride 4, with BatchNorm statistics that are not the identity."""
    import torch

    act = act or torch.nn.ReLU
    body = torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, 2, 1, bias=False), torch.nn.BatchNorm2d(16), act(),
        torch.nn.Conv2d(16, 24, 3, 2, 1, bias=False), torch.nn.BatchNorm2d(24), act(),
        torch.nn.Conv2d(24, 17, 1))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in body:
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.3, 0.3, generator=gen)
                m.running_var.uniform_(0.5, 1.5, generator=gen)
                m.weight.uniform_(0.5, 1.5, generator=gen)
                m.bias.uniform_(-0.3, 0.3, generator=gen)
    return body.eval()


@pytest.fixture(scope="session")
def opset8_bn_onnx(tmp_path_factory):
    """:func:`tiny_pose` exported as corpus entry ``opset8-bn`` (unfused BatchNorm with the
    legacy spatial attribute, opset 8) at 32x32: a CorpusModel."""
    from pose_tuner.models.zoo.corpus import export_entry

    return export_entry("opset8-bn", tiny_pose(), (32, 32), str(tmp_path_factory.mktemp("o8")))


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def pytest_configure(config):
    os.environ.setdefault("TVM_NUM_THREADS", "2")


#: set in this session's environment, so every process the tests start carries it
SESSION_ENV = "PTUNER_TEST_SESSION"


def _started_here(marker: str) -> list[tuple[int, str]]:
    """Live processes started by this test session (they carry its marker): pid and the
    test that was running when they started."""
    import psutil

    out = []
    for proc in psutil.process_iter(["pid", "environ", "status"]):
        env = proc.info.get("environ") or {}
        if env.get(SESSION_ENV) == marker and proc.info["pid"] != os.getpid() \
                and proc.info.get("status") != psutil.STATUS_ZOMBIE:
            out.append((proc.info["pid"], env.get("PYTEST_CURRENT_TEST", "?")))
    return out


@pytest.fixture(scope="session", autouse=True)
def no_process_left_behind():
    """Every fixture and test ends what it starts: when the session ends, no process it
    started may still run (a leftover RPC server or TVM worker would take CPU from later
    measurements on this machine). Leftovers are killed, and named with the test that
    started them."""
    import signal
    import time

    marker = f"{os.getpid()}-{time.time_ns()}"
    os.environ[SESSION_ENV] = marker
    yield
    deadline = time.time() + 15  # what is being stopped gets time to exit
    left = _started_here(marker)
    while left and time.time() < deadline:
        time.sleep(0.5)
        left = _started_here(marker)
    for pid, _test in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    assert not left, "processes left behind (pid, started during): " + "; ".join(
        f"{pid} ({test})" for pid, test in left)


@contextlib.contextmanager
def service(cmd: list[str]):
    """A background process (a tracker, an RPC server) in its own process group, stopped
    with everything it started (TVM's servers fork workers) when the block ends."""
    import signal
    import subprocess

    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        yield proc
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        proc.wait()


@pytest.fixture(scope="session")
def local_devices():
    """A tracker with two RPC servers on this machine: pose-tuner's device server under key
    ``helper`` and TVM's plain server under key ``plain`` (the remote path without qemu)."""
    import sys
    import time

    from pose_tuner.devices import device_server
    from pose_tuner.devices.emulator import free_port
    from pose_tuner.measure.rpc import RPCError, RPCSpec, servers, tracker_summary

    port = free_port()
    tracker = f"127.0.0.1:{port}"
    with contextlib.ExitStack() as stack:
        stack.enter_context(service([sys.executable, "-m", "tvm.exec.rpc_tracker", "--host",
                                     "127.0.0.1", "--port", str(port), "--port-end",
                                     str(port + 1)]))
        for key, server in (("helper", [device_server.__file__]),
                            ("plain", ["-m", "tvm.exec.rpc_server"])):
            p = free_port()
            stack.enter_context(service(
                [sys.executable, *server, "--host", "127.0.0.1", "--port", str(p),
                 "--port-end", str(p + 1), "--tracker", tracker, "--key", key]))
        deadline = time.time() + 90
        while True:
            try:
                summary = tracker_summary(RPCSpec.parse(tracker, "helper"), timeout_s=2)
                if servers(summary, "helper") and servers(summary, "plain"):
                    break
            except RPCError:
                pass
            assert time.time() < deadline, "local RPC servers did not register"
            time.sleep(0.5)
        yield tracker


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    """Every entry of :mod:`pose_tuner.models.zoo.corpus`, from a small untrained (BatchNorm
    recalibrated) MobileNetV2 SimpleBaseline at 64x32: name -> CorpusModel."""
    from pose_tuner.models import zoo
    from pose_tuner.models.zoo.corpus import export_corpus

    model = zoo.build_model("mobilenetv2_deconv", input_size=(64, 32), trained=False,
                            width_mult=0.25, deconv_channels=32)
    out = tmp_path_factory.mktemp("corpus")
    return {c.name: c for c in export_corpus(model, (64, 32), str(out))}
