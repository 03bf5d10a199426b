"""The joint space through the CLI: pruned and fp16 variants are built, checked and kept
apart in the database, and a search interrupted midway resumes without losing points."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

from pose_tuner.cli import main

MODEL = ["--model", "shufflenetv2_fpn", "--input-size", "64x64", "--measure-budget", "0.3",
         "--no-baselines", "--no-accuracy", "--schedules", "default"]


def rows(logs, cols="prune_ratio, quant, variant, status, param_count, flops, rel_err, finetune_steps"):
    con = sqlite3.connect(os.path.join(logs, "pareto.sqlite"))
    out = con.execute(f"select {cols} from candidates order by prune_ratio, quant").fetchall()
    con.close()
    return out


def test_pruned_and_fp16_points(tmp_path, capsys):
    logs = str(tmp_path / "logs")
    space = tmp_path / "space.toml"
    space.write_text("[pruning]\nratios = [0, 0.5]\nfinetune_steps = 0\n"
                     "[quantization]\nmodes = ['fp32', 'fp16']\n")
    assert main(["search", "--target", "x86", "--log-dir", logs, "--space", str(space),
                 *MODEL]) == 0
    got = rows(logs)
    assert [(p, q, v, s) for p, q, v, s, *_ in got] == [
        (0.0, "fp16", "", "ok"), (0.0, "fp32", "", "ok"),
        (0.5, "fp16", "l1-r8-ft0", "ok"), (0.5, "fp32", "l1-r8-ft0", "ok")]
    base, pruned = got[1], got[3]
    assert pruned[4] < base[4] and pruned[5] < 0.8 * base[5]  # fewer params and FLOPs
    assert pruned[7] == 0 and base[7] is None                 # not fine-tuned / not pruned
    assert base[6] < 2e-3 and got[0][6] < 5e-2                # fp32 exact, fp16 close
    # FPS, peak memory and the timing's conditions come with every figure
    for median, fps, mem, noisy, cond in rows(
            logs, "latency_median_ms, fps, peak_memory_mb, latency_noisy, timing_conditions"):
        assert abs(fps - 1000 / median) < 1e-6 and 0 < mem < 500 and noisy is not None
        assert {"spread", "others_cpu", "reference_drift", "attempts"} <= set(json.loads(cond))
    assert rows(logs, "peak_memory_mb")[3][0] < rows(logs, "peak_memory_mb")[1][0] + 1
    # the pruned variant is a smaller ONNX model of its own, reused on the next run
    (onnx_pruned,) = [f for f in os.listdir(os.path.join(logs, "models")) if "-p0.50-" in f
                      and f.endswith(".onnx")]
    assert main(["search", "--target", "x86", "--log-dir", logs, "--space", str(space),
                 *MODEL]) == 0
    assert capsys.readouterr().out.count("reused from the database") == 4


def test_interrupted_search_resumes_without_losing_points(tmp_path):
    logs = str(tmp_path / "logs")
    cmd = [sys.executable, "-m", "pose_tuner.cli", "search", "--target", "x86", "--log-dir", logs,
           "--prune", "0", "--quant", "fp32,fp16", *MODEL]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if ": ok, median" in line:  # first point stored: interrupt during the second
            break
    import psutil

    children = []
    for line in proc.stdout:
        seen.append(line)
        if "[2/2]" in line:
            time.sleep(1.0)
            children = psutil.Process(proc.pid).children(recursive=True)
            proc.send_signal(signal.SIGTERM)
            break
    rest = proc.communicate(timeout=60)[0]
    assert proc.returncode == 130, "".join(seen) + rest
    assert "interrupted" in rest
    assert children, "the second candidate's process should have been running"
    time.sleep(0.5)
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert rows(logs, "quant, status") == [("fp16", "ok")]  # the finished point only
    assert main(["search", "--target", "x86", "--log-dir", logs, "--prune", "0",
                 "--quant", "fp32,fp16", *MODEL]) == 0
    assert sorted(rows(logs, "quant, status")) == [("fp16", "ok"), ("fp32", "ok")]


def test_optuna_strategy_samples_and_resumes(tmp_path, capsys):
    """NSGA-II picks points from the space; a second run starts from what the database holds."""
    logs = str(tmp_path / "logs")
    space = tmp_path / "space.toml"
    space.write_text("[pruning]\nratios = [0, 0.5]\nfinetune_steps = 0\n"
                     "[quantization]\nmodes = ['fp32', 'fp16']\n")
    args = ["search", "--target", "x86", "--log-dir", logs, "--space", str(space),
            "--strategy", "nsga2", "--n-trials", "1",
            "--model", "shufflenetv2_fpn", "--input-size", "64x64", "--measure-budget", "0.3",
            "--no-baselines", "--val-images", "2", "--schedules", "default"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "4 points in the space, 0 known from the database, up to 1 new" in out
    first = rows(logs, "prune_ratio, quant, status, ap")
    assert len(first) == 1 and all(s == "ok" and ap is not None for *_, s, ap in first)
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "1 known from the database" in out
    second = rows(logs, "prune_ratio, quant, status, ap")
    assert len(second) == 2 and first[0] in second  # a new point, nothing measured twice
    assert all(s == "ok" and ap is not None for *_, s, ap in second)


def test_int8_point_runs_integer_convolutions(tmp_path):
    """An int8 candidate is built from the calibrated QDQ model with integer convs (u8 x s8
    -> s32) and checked against ONNX Runtime running that same quantized model."""
    from pose_tuner.compile import frontend
    from pose_tuner.compile.int8.rewrite import integer_reductions, integer_rewrite

    logs = str(tmp_path / "logs")
    assert main(["search", "--target", "x86", "--log-dir", logs, "--prune", "0",
                 "--quant", "int8", *MODEL]) == 0
    ((quant, status, rel_err, art),) = rows(logs, "quant, status, rel_err, artifact_path")
    assert (quant, status) == ("int8", "ok") and rel_err < 5e-2
    qdq = art[:-3] + ".qdq.onnx"
    mod = frontend.import_onnx(qdq)
    stats = {}
    rewritten = integer_rewrite(mod, stats)
    assert stats["conv2d"] >= 10  # the model's dense 1x1 / 3x3 convs
    assert len(integer_reductions(rewritten)) >= 5
    # the calibration used person crops, not noise: a real image batch of its own split
    import numpy as np

    (calib,) = [os.path.join(r, f) for r, _, fs in os.walk(logs) for f in fs
                if f.startswith("calibration-crops")]
    x = np.load(calib)
    assert x.shape == (32, 3, 64, 64) and x.std() > 0.3
