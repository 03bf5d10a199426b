"""benchmarks/gpu_check.py, tried on this machine's CPU: the kit's TVM runtime (no
compiler library) loads the libraries in a Python that has only numpy and tvm-ffi."""

import json
import os
import subprocess
import sys
import sysconfig

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "benchmarks", "gpu_check.py")


def test_kit_runs_with_a_runtime_only_tvm(tiny_onnx, tmp_path):
    kit = tmp_path / "kit"
    subprocess.run([sys.executable, SCRIPT, "prepare", "--target", "x86", "--model",
                    tiny_onnx, "--quant", "fp32,fp16", "--no-download", "--out", str(kit),
                    "--log-dir", str(tmp_path / "logs")], check=True, timeout=600)
    manifest = json.loads((kit / "manifest.json").read_text())
    assert manifest["device"] == "cpu" and len(manifest["artifacts"]) == 2
    # a bare Python: no site-packages, only numpy, tvm-ffi and typing_extensions
    site = sysconfig.get_paths()["purelib"]
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("numpy", "numpy.libs", "tvm_ffi", "typing_extensions.py"):
        if os.path.exists(os.path.join(site, name)):
            os.symlink(os.path.join(site, name), bare / name)
    run = subprocess.run([sys.executable, "-S", SCRIPT, "run", str(kit), "--budget", "0.2",
                          "--out", str(tmp_path / "report.json")],
                         env={"PATH": os.environ["PATH"], "PYTHONPATH": str(bare),
                              "HOME": str(tmp_path)},
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())
    env = report["environment"]
    assert env["tvm_runtime_only"] is True and str(kit) not in env["tvm_file"]
    assert not os.path.dirname(env["tvm_file"]).startswith(site)
    rows = {r["quant"]: r for r in report["results"]}
    assert rows["fp32"]["within_tolerance"] and rows["fp32"]["rel_err"] < 1e-4
    assert rows["fp16"]["within_tolerance"] and rows["fp16"]["rel_err"] < 5e-2
    assert all(r["median_ms"] > 0 for r in rows.values())
