"""Training command: augmentation consistency, a tiny training run, checkpoint round trip."""

import math

import numpy as np
import pytest
import torch

from pose_tuner.accuracy import (COCO_FLIP_PAIRS, affine_points, box_to_center_scale, crop,
                            load_coco_keypoints, load_image, preprocess)
from pose_tuner.models.zoo.weights import load_checkpoint, load_trained
from pose_tuner.training.cli import build_parser, config_from_args
from pose_tuner.training.data import InfiniteSampler, KeypointDataset, ensure_synthetic_split
from pose_tuner.training.train import TrainConfig, lr_factor, train

INPUT = (128, 96)            # (H, W)
STRIDE = 4


def _perm():
    perm = np.arange(17)
    for a, b in COCO_FLIP_PAIRS:
        perm[a], perm[b] = b, a
    return perm


@pytest.fixture(scope="module")
def people(tmp_path_factory):
    d = tmp_path_factory.mktemp("train-data")
    ann, imgs = ensure_synthetic_split(d / "split", 4, seed=11, image_size=(192, 160))
    return load_coco_keypoints(ann, imgs)


def _argmax_xy(hm):
    k, h, w = hm.shape
    idx = hm.reshape(k, -1).argmax(1)
    ys, xs = np.divmod(idx, w)
    return np.stack([xs, ys], 1).astype(np.float64)


@pytest.mark.parametrize("params", [
    dict(scale_factor=1.0, rot=0.0, flip=False),
    dict(scale_factor=0.8, rot=25.0, flip=False),
    dict(scale_factor=1.0, rot=0.0, flip=True),
    dict(scale_factor=1.2, rot=-30.0, flip=True),
])
def test_augmentation_keeps_keypoints_consistent(people, params):
    ds = KeypointDataset(people, INPUT, sigma=2.0)
    H, W = INPUT
    perm = _perm()
    checked = 0
    for idx, inst in enumerate(people):
        x, target, weight, meta = ds.sample(idx, **params)
        assert x.shape == (3, H, W) and x.dtype == np.float32
        assert target.shape == (17, H // STRIDE, W // STRIDE) and weight.shape == (17,)
        # recompute the crop independently: same pixels, and where the GT keypoints land
        center, scale = box_to_center_scale(inst.bbox, aspect=W / H, padding=1.25)
        patch, m = crop(load_image(inst.image_path), center, scale * params["scale_factor"],
                        (H, W), rot=params["rot"])
        gt = affine_points(m, inst.keypoints[:, :2])
        vis = inst.keypoints[:, 2] > 0
        if params["flip"]:
            patch = patch[:, ::-1]
            gt, vis = gt[perm].copy(), vis[perm]     # channel k shows the mirrored partner
            gt[:, 0] = W - 1 - gt[:, 0]
        np.testing.assert_allclose(x, preprocess(patch), atol=1e-6)
        inside = (gt[:, 0] >= 0) & (gt[:, 0] <= W - 1) & (gt[:, 1] >= 0) & (gt[:, 1] <= H - 1)
        np.testing.assert_array_equal(weight, (vis & inside).astype(np.float32))
        assert (target[weight == 0] == 0).all()
        peaks = _argmax_xy(target)
        for k in np.flatnonzero(weight > 0):
            d = np.abs(peaks[k] - gt[k] / STRIDE)
            assert d.max() <= 1.0, (idx, k, peaks[k], gt[k] / STRIDE)
            checked += 1
    assert checked >= 20


def test_flip_mirrors_sample(people):
    """A flipped sample is the mirror image of the unflipped one, left/right channels swapped."""
    ds = KeypointDataset(people, INPUT)
    H, W = INPUT
    perm = _perm()
    for idx in range(len(people)):
        x0, t0, w0, _ = ds.sample(idx, scale_factor=1.1, rot=10.0, flip=False)
        x1, t1, w1, _ = ds.sample(idx, scale_factor=1.1, rot=10.0, flip=True)
        np.testing.assert_array_equal(x1, x0[:, :, ::-1])
        np.testing.assert_array_equal(w1, w0[perm])
        p0, p1 = _argmax_xy(t0), _argmax_xy(t1)
        for k in np.flatnonzero(w1 > 0):
            mirrored_x = (W - 1) / STRIDE - p0[perm[k], 0]
            assert abs(p1[k, 0] - mirrored_x) <= 1.0 and p1[k, 1] == p0[perm[k], 1]


def test_random_draws_deterministic(people):
    ds = KeypointDataset(people, INPUT, seed=3)
    a = ds[(1, 17)]
    b = ds[(1, 17)]
    for u, v in zip(a, b):
        assert torch.equal(u, v)
    rng = np.random.default_rng([3, 17])
    x, t, w, _ = ds.sample(1, **ds.draw_params(1, rng))
    assert np.array_equal(a[0].numpy(), x) and np.array_equal(a[1].numpy(), t)
    # the sampler: every index once per epoch, draw numbers counting up
    s = iter(InfiniteSampler(5, seed=0))
    first = [next(s) for _ in range(10)]
    assert [n for _, n in first] == list(range(10))
    assert sorted(i for i, _ in first[:5]) == list(range(5))
    assert sorted(i for i, _ in first[5:]) == list(range(5))


def test_lr_schedule():
    assert lr_factor(0.0, 0, warmup_steps=10) == pytest.approx(0.1)
    assert lr_factor(0.0, 20, warmup_steps=10) == pytest.approx(1.0)
    assert lr_factor(0.5, 20, warmup_steps=10, min_ratio=0.0) == pytest.approx(0.5)
    assert lr_factor(1.0, 20, warmup_steps=10, min_ratio=0.01) == pytest.approx(0.01)


def test_cli_parses_every_field():
    args = build_parser().parse_args(
        ["--model", "shufflenetv2_fpn", "--max-minutes", "40", "--input-size", "128x96",
         "--width-mult", "0.5", "--model-arg", "fpn_channels=64", "--max-steps", "none",
         "--no-evaluate", "--flip-test", "--scale-range", "0.7,1.3"])
    cfg = config_from_args(args)
    assert cfg.model == "shufflenetv2_fpn" and cfg.max_minutes == 40.0 and cfg.max_steps is None
    assert cfg.input_size == (128, 96) and cfg.width_mult == 0.5
    assert cfg.model_kwargs == (("fpn_channels", 64),) and cfg.scale_range == (0.7, 1.3)
    assert cfg.flip_test and not cfg.evaluate
    with pytest.raises(ValueError):
        TrainConfig(input_size=(100, 96))
    with pytest.raises(ValueError):
        TrainConfig(max_steps=None, max_minutes=None)


def test_tiny_training_run(tmp_path):
    torch.set_num_threads(2)
    ckpt = tmp_path / "weights" / "shufflenetv2_fpn.pt"
    cfg = TrainConfig(model="shufflenetv2_fpn", width_mult=0.5, input_size=(64, 64),
                      data_dir=str(tmp_path / "data"), image_size=(128, 128),
                      train_images=12, val_images=3, max_steps=30, max_minutes=None,
                      batch_size=8, lr=2e-3, warmup_steps=3, num_workers=0, seed=0,
                      log_every_s=1e9, checkpoint=str(ckpt))
    lines = []
    res = train(cfg, progress=lines.append)
    assert torch.get_num_threads() == 2          # train() restores the caller's thread count
    assert res.steps == 30 and ckpt.is_file() and res.checkpoint == str(ckpt)
    losses = [v for _, v in res.history]
    first, last = np.mean(losses[:3]), np.mean(losses[-5:])
    assert last < 0.7 * first, (first, last)
    assert math.isfinite(res.final_loss)
    assert res.val_ap is not None and math.isfinite(res.val_ap) and 0.0 <= res.val_ap <= 1.0
    assert res.val_pck is not None and math.isfinite(res.val_pck) and 0.0 <= res.val_pck <= 1.0
    assert any("val" in s and "AP" in s for s in lines)

    # the data is reused on a second look (no regeneration)
    split = cfg.split_dir("train") / "person_keypoints.json"
    mtime = split.stat().st_mtime_ns
    ensure_synthetic_split(cfg.split_dir("train"), 12, 1, (128, 128))
    assert split.stat().st_mtime_ns == mtime

    meta = load_checkpoint(ckpt)
    assert meta["model"] == "shufflenetv2_fpn" and meta["input_size"] == [64, 64]
    assert meta["steps"] == 30 and meta["val_ap"] == pytest.approx(res.val_ap)
    assert meta["torch_version"] == torch.__version__
    assert meta["train_config"]["width_mult"] == 0.5
    floats = [v for v in meta["state_dict"].values() if v.is_floating_point()]
    assert floats and all(v.dtype == torch.float16 for v in floats)

    # wrong architecture / missing file -> None
    assert load_trained("shufflenetv2_fpn", (64, 64), weights_dir=tmp_path / "weights") is None
    assert load_trained("mobilenetv2_deconv", (64, 64), weights_dir=tmp_path / "weights") is None
    assert load_trained("shufflenetv2_fpn", (64, 64), width_mult=0.5,
                        weights_dir=tmp_path / "weights", strict_input_size=True,
                        fpn_channels=64) is None
    assert load_trained("shufflenetv2_fpn", (96, 64), width_mult=0.5,
                        weights_dir=tmp_path / "weights", strict_input_size=True) is None

    loaded = load_trained("shufflenetv2_fpn", (64, 64), width_mult=0.5,
                          weights_dir=tmp_path / "weights")
    assert loaded is not None and not loaded.training
    assert all(p.dtype == torch.float32 for p in loaded.state_dict().values()
               if p.is_floating_point())
    assert loaded.trained_meta["steps"] == 30

    trained = res.model.eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = trained(x)
        out = loaded(x)
        # exactly the trained model with its weights rounded to fp16
        rounded = type(trained)(width_mult=0.5)
        rounded.load_state_dict({k: (v.half().float() if v.is_floating_point() else v)
                                 for k, v in trained.state_dict().items()})
        exact = rounded.eval()(x)
    assert out.shape == ref.shape == (2, 17, 16, 16)
    assert torch.equal(out, exact)
    scale = ref.abs().max().item()
    assert (out - ref).abs().max().item() <= 2e-2 * scale + 1e-4
