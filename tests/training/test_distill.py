"""Distillation after pruning: the pruned model learns the unpruned one's outputs on the
user's images, without labels, and is the default recovery for models not from the zoo."""

import os
import sqlite3

import numpy as np
import pytest
import torch

from pose_tuner.models.pruning import prune_model
from pose_tuner.accuracy import generate
from pose_tuner.training.distill import distill, image_instances
from pose_tuner.training.data import KeypointDataset
from pose_tuner.cli import main


def pose_factory():
    """A PyTorch pose model as a user's package would give it (``module:factory``)."""
    from pose_tuner.models import zoo

    return zoo.build_model("mobilenetv2_deconv", input_size=(64, 64), trained=False,
                           width_mult=0.25, deconv_channels=32)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    out = tmp_path_factory.mktemp("imgs")
    ann = generate(out, 6, seed=11, image_size=(160, 160))
    return str(ann), str(out / "images")


def _gap(student, teacher, people):
    """Mean squared difference of the two models' outputs on un-augmented crops."""
    ds = KeypointDataset(people, (64, 64), augment=False)
    x = torch.stack([torch.from_numpy(ds.sample(i)[0]) for i in range(len(ds))])
    with torch.no_grad():
        return float(torch.mean((student.eval()(x) - teacher.eval()(x)) ** 2))


def test_distillation_brings_the_pruned_model_to_the_unpruned_one(images):
    teacher = pose_factory()
    pruned, _ = prune_model(teacher, 0.5, torch.rand(1, 3, 64, 64))
    people = image_instances(images[1], images[0])
    before = _gap(pruned, teacher, people)
    res = distill(pruned, teacher, 60, (64, 64), people, lr=3e-3)
    assert res.final_loss < 0.75 * res.first_loss
    assert _gap(pruned, teacher, people) < 0.75 * before
    assert not pruned.training


def test_a_folder_of_images_is_distilled_on_whole_images(images, tmp_path):
    people = image_instances(images[1])
    assert len(people) == 6 and all(p.bbox[:2] == (0.0, 0.0) for p in people)
    assert np.all(people[0].keypoints == 0)
    with pytest.raises(ValueError, match="no image file"):
        image_instances(str(tmp_path))


def test_a_pytorch_model_is_pruned_and_distilled_on_the_users_images(images, tmp_path, capsys):
    logs = str(tmp_path / "logs")
    space = tmp_path / "space.toml"
    space.write_text("[pruning]\nratios = [0.5]\nfinetune_steps = 8\n")
    assert main(["search", "--target", "x86", "--log-dir", logs, "--space", str(space),
                 "--model", f"{__name__}:pose_factory", "--input-size", "64x64",
                 "--quant", "fp32", "--schedules", "default", "--measure-budget", "0.3",
                 "--no-baselines", "--coco-ann", images[0], "--coco-images", images[1]]) == 0
    out = capsys.readouterr().out
    assert "distilling 8 steps from the unpruned model" in out
    assert "AP (torch) unpruned" in out and "after distill" in out
    con = sqlite3.connect(os.path.join(logs, "pareto.sqlite"))
    ((variant, status, ap),) = con.execute("select variant, status, ap from candidates").fetchall()
    assert variant == "l1-r8-kd8" and status == "ok" and ap is not None
