"""Models users bring, end to end through ``tuner search``: ONNX files shaped like other
exporters' (:mod:`pose_tuner.models.zoo.corpus`) in fp32 (default and tuned) and int8, with the
numerical check passing; a model TVM cannot import gives a failed row, not a crash."""

import os
import sqlite3

import pytest
import torch

from pose_tuner.cli import main
from pose_tuner.models.hashing import file_hash
from pose_tuner.models.zoo.corpus import export_entry

from ..conftest import tiny_pose


def _search(logs, model, *extra):
    return main(["search", "--target", "x86", "--log-dir", str(logs), "--model", model,
                 "--prune", "0", "--measure-budget", "0.3", "--no-baselines", *extra])


def _rows(logs):
    con = sqlite3.connect(os.path.join(logs, "pareto.sqlite"))
    rows = con.execute("select quant, schedule, status, error, rel_err, ap, cleaned_hash, "
                       "model_path from candidates where backend='tvm' order by id").fetchall()
    con.close()
    return rows


def test_opset8_unfused_batchnorm_model_tunes_quantizes_and_passes_the_check(opset8_bn_onnx,
                                                                             tmp_path):
    entry = opset8_bn_onnx
    logs = tmp_path / "logs"
    assert _search(logs, entry.path, "--quant", "fp32,int8", "--schedules",
                   "metaschedule:8", "--no-accuracy") == 0
    rows = _rows(logs)
    assert sorted((q, s, st) for q, s, st, *_ in rows) == [
        ("fp32", "metaschedule", "ok"), ("int8", "metaschedule", "ok")]
    for quant, _, _, _, rel, _, cleaned, path in rows:
        assert cleaned == file_hash(path) != file_hash(entry.path)
        assert quant == "int8" or rel < 1e-3


def test_simcc_model_is_built_checked_and_decoded(corpus, tmp_path):
    logs = tmp_path / "logs"
    assert _search(logs, corpus["simcc"].path, "--quant", "fp32,int8", "--schedules",
                   "default", "--val-images", "6") == 0
    rows = _rows(logs)
    assert [r[2] for r in rows] == ["ok", "ok"]
    assert all(r[5] is not None for r in rows)  # AP measured: the SimCC decoder ran


def test_an_op_tvm_cannot_import_is_a_failed_row(tmp_path, capsys):
    entry = export_entry("opset13", tiny_pose(act=torch.nn.CELU), (32, 32),
                         str(tmp_path / "m"))
    logs = tmp_path / "logs"
    assert _search(logs, entry.path, "--quant", "fp32", "--schedules", "default",
                   "--no-accuracy") == 1
    ((_, _, status, error, *_),) = _rows(logs)
    assert status == "failed" and "Celu" in error and "\n" not in error
    assert "Traceback" not in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.parametrize("name", ["opset8-bn", "opset11", "opset13", "opset17", "nhwc",
                                  "simcc", "dynbatch", "preproc", "multiout"])
def test_every_corpus_model_in_every_mode(corpus, tmp_path, name):
    entry = corpus[name]
    logs = tmp_path / "logs"
    assert _search(logs, entry.path, "--quant", "fp32,int8", "--schedules",
                   "default,metaschedule:32", "--val-images", "6", *entry.search_args) == 0
    rows = _rows(logs)
    assert len(rows) == 4 and all(r[2] == "ok" for r in rows), rows
