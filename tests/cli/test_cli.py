"""End to end through the CLI: a real search (TVM builds, MetaSchedule, ORT check) on a
tiny zoo model, the database, pareto/best, and the one-line errors on bad input."""

import json
import os
import sqlite3

import pytest

from pose_tuner.hardware import get_target
from pose_tuner.cli import main

SPACE = ["--prune", "0", "--quant", "fp32"]
TINY_MODEL = ["--model", "shufflenetv2_fpn", "--input-size", "64x64", "--measure-budget", "0.5",
              *SPACE]
TINY = [*TINY_MODEL, "--val-images", "8"]
COCO_SAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data",
                           "coco-sample")


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    logs = tmp_path_factory.mktemp("logs")
    rc = main(["search", "--target", "x86", "--log-dir", str(logs),
               "--schedules", "default,metaschedule:8", *TINY])
    assert rc == 0
    return str(logs)


def db_rows(logs):
    con = sqlite3.connect(os.path.join(logs, "pareto.sqlite"))
    rows = con.execute("select schedule, trials, status, latency_median_ms, rel_err, "
                       "artifact_path, model_size_bytes, flops, param_count, tvm_version "
                       "from candidates where backend='tvm' order by id").fetchall()
    con.close()
    return rows


def test_search_records_measured_checked_candidates(searched, capsys):
    rows = db_rows(searched)
    assert [(r[0], r[1], r[2]) for r in rows] == [("default", 0, "ok"), ("metaschedule", 8, "ok")]
    for _, _, _, lat, rel, art, size, flops, params, tvm_v in rows:
        assert lat > 0 and rel < 1e-3 and os.path.isfile(art) and size > 0
        assert flops > 0 and params > 0 and tvm_v.startswith("0.27")
    tuning = os.path.join(searched, "tuning")
    (tdir,) = os.listdir(tuning)
    assert os.path.getsize(os.path.join(tuning, tdir, "database_tuning_record.json")) > 0


def test_rerun_reuses_points_without_duplicates(searched, capsys):
    rc = main(["search", "--target", "x86", "--log-dir", searched,
               "--schedules", "default,metaschedule:8", *TINY])
    assert rc == 0
    out = capsys.readouterr().out
    # TVM points + x86 baselines; a skipped one (BF16 without native bf16) is checked again
    skipped = out.count(": skipped: ")
    assert out.count("reused from the database") == 2 + 5 - skipped
    assert len(db_rows(searched)) == 2


def test_pareto_json_and_best(searched, capsys):
    capsys.readouterr()
    assert main(["pareto", "--target", "x86", "--log-dir", searched, "--json",
                 "--no-baselines"]) == 0
    front = json.loads(capsys.readouterr().out)
    assert {r["backend"] for r in front} == {"tvm"}
    assert front and all(r["status"] == "ok" for r in front)
    fastest = min(front, key=lambda r: r["latency_median_ms"])
    assert main(["best", "--target", "x86", "--log-dir", searched,
                 "--max-latency-ms", str(fastest["latency_median_ms"] + 1e-6)]) == 0
    best = json.loads(capsys.readouterr().out)
    assert best["id"] == fastest["id"] and os.path.isfile(best["artifact_path"])
    # what a deployment pipeline needs besides the figures
    assert best["artifact_exists"] is True and best["export"] == f"tuner export {best['id']} --out DIR"
    host = get_target("x86").name  # the alias stores rows under the target it resolves to
    assert best["target"] == host
    assert best["rebuild"].startswith(f"tuner search --target {host} --model {best['model_path']} ")
    assert f"--quant {best['quant']}" in best["rebuild"] and os.path.isfile(best["model_path"])
    assert main(["best", "--target", "x86", "--log-dir", searched,
                 "--max-latency-ms", "0.000001"]) == 2
    assert "no candidate meets the constraints" in capsys.readouterr().err
    assert main(["best", "--target", "x86", "--log-dir", searched, "--min-ap", "1.01"]) == 2
    assert "AP" in capsys.readouterr().err


def test_targets_lists_json(capsys):
    assert main(["targets", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    names = [t["name"] for t in out["targets"]]
    assert names == ["x86-vnni", "x86-avx512", "x86-avxvnni", "x86-avx2", "rasp4b", "cuda"]
    alias = out["aliases"]["x86"]
    assert alias["resolves_to"] == get_target("x86").name and alias["why"].startswith("x86 -> ")
    avx2 = next(t for t in out["targets"] if t["name"] == "x86-avx2")
    assert avx2["int8_kernel"] == "avx2" and avx2["int8_weight_bits"] == 7
    assert main(["targets"]) == 0
    assert capsys.readouterr().out.startswith(f"x86 -> {get_target('x86').name}: this host is ")


def _err(capsys, argv):
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert err.startswith("tuner: error: ") and "\n" not in err, err
    return err


def test_bad_input_gives_one_line_errors(tmp_path, capsys, monkeypatch):
    logs = str(tmp_path / "logs")
    base = ["search", "--log-dir", logs]
    assert "unknown target 'rasp5'" in _err(capsys, [*base, "--target", "rasp5"])
    monkeypatch.delenv("TVM_TRACKER_HOST", raising=False)
    assert "no Raspberry Pi is attached" in _err(capsys, [*base, "--target", "rasp4b"])
    assert "does not exist" in _err(capsys, [*base, "--target", "x86", "--model", "nope.onnx"])
    bad = tmp_path / "corrupt.onnx"
    bad.write_bytes(b"\x08\x07garbage" * 10)
    assert "not a valid ONNX model" in _err(capsys, [*base, "--target", "x86", "--model", str(bad)])
    assert "--trials must be > 0" in _err(capsys, [*base, "--target", "x86", "--trials", "0"])
    assert "trial budget must be > 0" in _err(
        capsys, [*base, "--target", "x86", "--schedules", "metaschedule:0"])
    assert "unknown model" in _err(capsys, [*base, "--target", "x86", "--model", "resnet"])
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert "log directory" in _err(
        capsys, ["search", "--target", "x86", "--log-dir", str(blocker / "sub")])
    assert not os.path.exists(logs) or not os.listdir(logs) or True


def test_non_heatmap_model_is_refused(tmp_path, capsys):
    import torch

    class Classifier(torch.nn.Module):
        def forward(self, x):
            return x.mean(dim=(2, 3))

    path = tmp_path / "cls.onnx"
    torch.onnx.export(Classifier(), (torch.randn(1, 3, 32, 32),), str(path), dynamo=False)
    err = _err(capsys, ["search", "--target", "x86", "--log-dir", str(tmp_path / "l"),
                        "--model", str(path)])
    assert "no output is a pose head" in err


def test_newer_database_is_refused_untouched(searched, tmp_path, capsys):
    import shutil

    db = tmp_path / "p.sqlite"
    shutil.copy(os.path.join(searched, "pareto.sqlite"), db)
    con = sqlite3.connect(db)
    con.execute("update meta set value='99' where key='schema_version'")
    con.commit()
    con.close()
    before = db.read_bytes()
    err = _err(capsys, ["search", "--target", "x86", "--log-dir", str(tmp_path / "l"),
                        "--db", f"sqlite:///{db}", *TINY])
    assert "newer than this pose-tuner" in err
    assert db.read_bytes() == before


def test_failed_candidate_is_recorded_and_search_continues(tmp_path, capsys):
    """A candidate that cannot finish in its timeout is stored as failed; the next runs."""
    logs = str(tmp_path / "logs")
    rc = main(["search", "--target", "x86", "--log-dir", logs, "--timeout", "1",
               "--schedules", "default", "--no-baselines", *TINY])
    assert rc == 1  # nothing succeeded
    (row,) = db_rows(logs)
    assert row[2] == "failed"
    con = sqlite3.connect(os.path.join(logs, "pareto.sqlite"))
    (err,) = con.execute("select error from candidates").fetchone()
    assert "timed out after 1 s" in err


def test_baselines_are_stored_beside_tvm_and_compared(searched, capsys):
    con = sqlite3.connect(os.path.join(searched, "pareto.sqlite"))
    rows = con.execute("select backend, quant, schedule, status, error, latency_median_ms "
                       "from candidates where backend != 'tvm' order by id").fetchall()
    con.close()
    assert [(b, q) for b, q, *_ in rows] == [
        ("onnxruntime", "fp32"), ("onnxruntime", "int8"), ("openvino", "fp32"),
        ("openvino", "bf16"), ("openvino", "int8")]
    for backend, quant, schedule, status, error, lat in rows:
        assert schedule == "vendor"
        assert (status == "ok" and lat > 0) or (status == "skipped" and error), (backend, quant)
    capsys.readouterr()
    assert main(["compare", "--target", "x86", "--log-dir", searched, "--json"]) == 0
    cmp = json.loads(capsys.readouterr().out)
    ort = next(c for c in cmp if c["baseline"] == "onnxruntime-fp32")
    assert ort["latency_ratio"] == pytest.approx(ort["tvm_ms"] / ort["baseline_ms"])
    assert ort["matched_by"] == "AP within 0.01"
    assert main(["pareto", "--target", "x86", "--log-dir", searched, "--all"]) == 0
    assert "openvino" in capsys.readouterr().out
    assert main(["best", "--target", "x86", "--log-dir", searched]) == 0
    assert json.loads(capsys.readouterr().out)["backend"] == "tvm"


def test_a_baseline_found_unavailable_when_prepared_is_checked_again(searched, tmp_path,
                                                                    capsys):
    """Like a skipped one: what was missing may be there now."""
    import shutil

    logs = str(tmp_path / "logs")
    shutil.copytree(searched, logs)
    con = sqlite3.connect(os.path.join(logs, "pareto.sqlite"))
    con.execute("update candidates set status='failed', error_kind='unavailable', "
                "error='x', latency_median_ms=null where backend='onnxruntime' and "
                "quant='fp32'")
    con.commit()
    capsys.readouterr()
    assert main(["search", "--target", "x86", "--log-dir", logs, "--schedules", "default",
                 *TINY]) == 0
    out = capsys.readouterr().out
    assert "onnxruntime-fp32: start" in out and "reused from the database (failed" not in out
    (status,) = con.execute("select status from candidates where backend='onnxruntime' "
                            "and quant='fp32'").fetchone()
    con.close()
    assert status in ("ok", "skipped")


def test_accuracy_is_measured_once_per_variant_and_shared(searched):
    con = sqlite3.connect(os.path.join(searched, "pareto.sqlite"))
    rows = con.execute("select backend, quant, ap, pck, accuracy_dataset, accuracy_people "
                       "from candidates where status='ok'").fetchall()
    con.close()
    for backend, quant, ap, pck, ds, n in rows:
        assert ap is not None and 0 <= ap <= 1 and 0 <= pck <= 1, (backend, quant)
        assert ds == "synthetic-val:seed2:n8" and n > 0
    tvm = [r for r in rows if r[0] == "tvm"]
    assert len(tvm) == 2 and tvm[0][2:4] == tvm[1][2:4]  # one evaluation, shared by schedules


@pytest.mark.skipif(not os.path.isdir(COCO_SAMPLE), reason="shared COCO sample not present")
def test_real_coco_sample_and_its_errors(searched, tmp_path, capsys):
    ann = os.path.join(COCO_SAMPLE, "person_keypoints.json")
    imgs = os.path.join(COCO_SAMPLE, "images")
    rc = main(["search", "--target", "x86", "--log-dir", searched, "--schedules",
               "metaschedule:8", "--no-baselines", "--coco-ann", ann, "--coco-images", imgs,
               "--max-people", "6", *TINY_MODEL])
    assert rc == 0
    out = capsys.readouterr().out
    assert "reused from the database" in out and "[accuracy]" in out
    con = sqlite3.connect(os.path.join(searched, "pareto.sqlite"))
    (ds, n, ap) = con.execute("select accuracy_dataset, accuracy_people, ap from candidates "
                              "where backend='tvm' and trials=8").fetchone()
    con.close()
    assert ds.startswith("coco:person_keypoints.json:") and 0 < n <= 6 and ap is not None
    bad = tmp_path / "det.json"
    bad.write_text(json.dumps({"images": [], "annotations": [], "categories": []}))
    err = _err(capsys, ["search", "--target", "x86", "--log-dir", str(tmp_path / "l"),
                        "--coco-ann", str(bad), "--coco-images", imgs, *TINY_MODEL])
    assert "keypoint" in err.lower()
    err = _err(capsys, ["search", "--target", "x86", "--log-dir", str(tmp_path / "l"),
                        "--coco-ann", ann, "--coco-images", str(tmp_path / "none"), *TINY_MODEL])
    assert "images" in err.lower()


def test_export_writes_a_runnable_bundle(searched, tmp_path, capsys):
    import numpy as np

    capsys.readouterr()
    assert main(["best", "--target", "x86", "--log-dir", searched]) == 0
    best = json.loads(capsys.readouterr().out)
    out = tmp_path / "bundle"
    assert main(["export", str(best["id"]), "--out", str(out), "--log-dir", searched]) == 0
    assert {"model.so", "metadata.json", "reference.onnx"} <= set(os.listdir(out))
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["candidate"]["id"] == best["id"]
    assert meta["input"]["preprocess"]["color"] == "RGB"  # the zoo's convention, spelled out
    assert len(meta["input"]["preprocess"]["mean"]) == 3
    import tvm
    from tvm import relax

    from pose_tuner.measure.inputs import structured_input
    from pose_tuner.measure.reference import ORTSession

    x = structured_input((1, 3, 64, 64), seed=5)
    vm = relax.VirtualMachine(tvm.runtime.load_module(str(out / "model.so")), tvm.cpu())
    got = vm["main"](tvm.runtime.tensor(x)).numpy()
    np.testing.assert_allclose(got, ORTSession(str(out / "reference.onnx")).run(x),
                               atol=1e-3 * np.abs(got).max())
    assert "no candidate with id 9999" in _err(
        capsys, ["export", "9999", "--out", str(tmp_path / "x"), "--log-dir", searched])


def test_pareto_plot_writes_a_png(searched, tmp_path, capsys):
    out = tmp_path / "front.png"
    assert main(["pareto", "--target", "x86", "--log-dir", searched, "--plot", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
    assert main(["pareto", "--target", "x86", "--log-dir", searched, "--plot",
                 str(tmp_path / "missing" / "f.png")]) == 2
    assert "cannot plot" in capsys.readouterr().err


def test_build_without_a_device(tmp_path, tiny_onnx, capsys):
    """`tuner build` compiles for a target this machine cannot measure: CUDA, and the Pi
    (an aarch64 shared library, cross-linked)."""
    import shutil

    assert main(["build", "--target", "cuda", "--model", tiny_onnx, "--out",
                 str(tmp_path / "cuda.so"), "--log-dir", str(tmp_path)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["status"] == "ok" and out["tvm_target"]["kind"] == "cuda"
    if shutil.which("nvcc"):  # kernels compiled here: the GPU machine needs no compiler
        assert out["cuda_compiler"] == "nvcc" and out["cuda_images"] == ["sm_90 cubin"]
        assert b'extern "C" __global__' not in (tmp_path / "cuda.so").read_bytes()
    if shutil.which("aarch64-linux-gnu-g++"):
        assert main(["build", "--target", "rasp4b", "--model", tiny_onnx, "--out",
                     str(tmp_path / "pi.so"), "--log-dir", str(tmp_path)]) == 0
        head = (tmp_path / "pi.so").read_bytes()[:20]
        assert head[:4] == b"\x7fELF" and int.from_bytes(head[18:20], "little") == 183
    assert main(["build", "--target", "cuda", "--model", tiny_onnx, "--out",
                 str(tmp_path / "x.bin")]) == 2


def test_device_server_script_is_written_and_stands_alone(tmp_path, capsys):
    """The script a user copies to the Pi: standalone (no pose-tuner import), with the
    arguments of TVM's RPC server."""
    import subprocess
    import sys

    out = tmp_path / "pose_tuner_device_server.py"
    assert main(["device", "server-script", "--out", str(out)]) == 0
    assert "--tracker HOST:9190 --key rasp4b" in capsys.readouterr().err
    text = out.read_text()
    assert "from targets" not in text and "import tuner" not in text
    res = subprocess.run([sys.executable, str(out), "--help"], capture_output=True, text=True,
                         cwd=tmp_path, env={"PATH": "/usr/bin:/bin"})
    assert res.returncode == 0 and "--tracker" in res.stdout and "--key" in res.stdout
    assert main(["device", "server-script"]) == 0
    assert capsys.readouterr().out == text


def test_build_for_another_gpu_architecture(tmp_path, tiny_onnx, capsys):
    """`--cuda-arch` picks the GPU the kernels are compiled for; a malformed one, or one
    given to a CPU target, is refused."""
    import shutil

    if shutil.which("nvcc") is None:
        pytest.skip("nvcc not installed")
    assert main(["build", "--target", "cuda", "--cuda-arch", "sm_86", "--model", tiny_onnx,
                 "--out", str(tmp_path / "a.so"), "--log-dir", str(tmp_path)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["tvm_target"]["arch"] == "sm_86" and out["cuda_images"] == ["sm_86 cubin"]
    with pytest.raises(SystemExit):
        main(["build", "--target", "cuda", "--cuda-arch", "86", "--model", tiny_onnx,
              "--out", str(tmp_path / "b.so")])
    assert "like sm_86" in capsys.readouterr().err
    assert main(["build", "--target", "x86", "--cuda-arch", "sm_86", "--model", tiny_onnx,
                 "--out", str(tmp_path / "c.so")]) == 2
    assert "--target cuda only" in capsys.readouterr().err
