"""Accuracy layer: synthetic data, COCO loading, crops, decoders and OKS/PCK evaluation."""

import filecmp
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from pose_tuner.accuracy import (COCO_FLIP_PAIRS, HeatmapDecoder, SimCCDecoder, affine_points,
                            box_to_center_scale, crop, evaluate, generate, get_decoder,
                            load_coco_keypoints, preprocess, render_gaussian_heatmaps)

COCO_SAMPLE = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "coco-sample"
INPUT = (256, 192)
HM = (64, 48)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    ann = generate(out, 6, seed=7)
    return Path(ann), out / "images"


@pytest.fixture(scope="module")
def synth_people(synth):
    return load_coco_keypoints(*synth)


def oracle(shift=(0.0, 0.0), input_size=INPUT, hm_size=HM):
    """predict(x, meta): Gaussian heatmaps at the GT keypoints of the crop (optionally shifted)."""
    perm = np.arange(17)
    for a, b in COCO_FLIP_PAIRS:
        perm[a], perm[b] = b, a

    def predict(x, meta):
        assert x.shape == (1, 3) + tuple(input_size) and x.dtype == np.float32
        gt = meta.instance.keypoints
        pts = affine_points(meta.affine, gt[:, :2]) + np.asarray(shift)
        vis = gt[:, 2] > 0
        if meta.flipped:       # a model sees the mirrored person: channel 'left' at the right
            pts, vis = pts[perm], vis[perm]
        return render_gaussian_heatmaps(pts, input_size, hm_size, vis)

    return predict


# --------------------------------------------------------------------------- synthetic data


def test_generator_deterministic(tmp_path):
    a = generate(tmp_path / "a", 3, seed=1)
    b = generate(tmp_path / "b", 3, seed=1)
    c = generate(tmp_path / "c", 3, seed=2)
    assert Path(a).read_bytes() == Path(b).read_bytes()
    names = sorted(p.name for p in (tmp_path / "a" / "images").iterdir())
    assert names == ["000001.jpg", "000002.jpg", "000003.jpg"]
    for n in names:
        assert filecmp.cmp(tmp_path / "a" / "images" / n, tmp_path / "b" / "images" / n, shallow=False)
    assert json.loads(Path(a).read_text())["annotations"] != json.loads(Path(c).read_text())["annotations"]
    assert (tmp_path / "a" / "images" / names[0]).read_bytes() != (tmp_path / "c" / "images" / names[0]).read_bytes()


def test_generator_valid_coco(synth):
    from pycocotools.coco import COCO

    ann, img_dir = synth
    coco = COCO(str(ann))
    assert coco.getCatIds() == [1]
    cat = coco.loadCats(1)[0]
    assert len(cat["keypoints"]) == 17 and len(cat["skeleton"]) == 19
    anns = coco.loadAnns(coco.getAnnIds())
    assert len(anns) >= 6
    for a in anns:
        img = coco.loadImgs(a["image_id"])[0]
        assert (img_dir / img["file_name"]).is_file()
        kp = np.asarray(a["keypoints"]).reshape(17, 3)
        v = kp[:, 2]
        assert set(np.unique(v)) <= {0, 1, 2}
        assert a["num_keypoints"] == int((v > 0).sum()) > 0
        assert a["iscrowd"] == 0 and a["category_id"] == 1 and a["area"] > 0
        x, y, w, h = a["bbox"]
        assert w > 0 and h > 0 and x >= 0 and y >= 0
        assert x + w <= img["width"] + 1e-6 and y + h <= img["height"] + 1e-6
        lab = kp[v > 0, :2]
        assert ((lab[:, 0] >= x - 1) & (lab[:, 0] <= x + w + 1)).all()
        assert ((lab[:, 1] >= y - 1) & (lab[:, 1] <= y + h + 1)).all()
        assert (kp[v == 0, :2] == 0).all()
    # occlusion labels are produced across the set
    allv = np.concatenate([np.asarray(a["keypoints"])[2::3] for a in anns])
    assert (allv == 2).sum() > 0 and (allv == 1).sum() > 0


# --------------------------------------------------------------------------- crop / decode


def test_crop_matches_affine():
    # a smooth blob at a sub-pixel position: its centroid in the patch must sit where the
    # affine matrix maps it (a half-pixel convention slip would move it by ~1 patch pixel)
    yy, xx = np.mgrid[0:120, 0:160]
    src = (100.3, 40.6)
    img = np.zeros((120, 160, 3), np.uint8)
    img[..., 0] = np.round(250 * np.exp(-((xx - src[0]) ** 2 + (yy - src[1]) ** 2) / (2 * 3.0 ** 2)))
    center, scale = box_to_center_scale([70, 20, 60, 50], aspect=192 / 256)
    assert scale[0] / scale[1] == pytest.approx(192 / 256)
    patch, m = crop(img, center, scale, INPUT)
    assert patch.shape == (256, 192, 3) and patch.dtype == np.uint8
    want = affine_points(m, [src])[0]
    wgt = patch[..., 0].astype(np.float64)
    py, px = np.mgrid[0:256, 0:192]
    got = np.array([(wgt * px).sum(), (wgt * py).sum()]) / wgt.sum()
    assert np.abs(got - want).max() < 0.2, (got, want)
    assert affine_points(m, [center])[0] == pytest.approx([96, 128])
    x = preprocess(patch, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert x.shape == (3, 256, 192) and x.dtype == np.float32 and x.min() == pytest.approx(-1.0)


def test_heatmap_and_simcc_decoders(rng):
    pts = rng.uniform([8, 8], [184, 248], (17, 2))
    dec = get_decoder((1, 17, 64, 48), INPUT)
    assert isinstance(dec, HeatmapDecoder)
    got, scores = dec.decode(render_gaussian_heatmaps(pts, INPUT, HM))
    assert np.abs(got - pts).max() <= 2.0 and scores.min() > 0.9
    # SimCC: 1-D Gaussians at split ratio 2
    xs = np.exp(-(np.arange(384)[None] - 2 * pts[:, :1]) ** 2 / 8)[None]
    ys = np.exp(-(np.arange(512)[None] - 2 * pts[:, 1:]) ** 2 / 8)[None]
    dec = get_decoder([xs.shape, ys.shape], INPUT)
    assert isinstance(dec, SimCCDecoder) and dec.split_ratio == 2.0
    got, _ = dec.decode((xs, ys))
    assert np.abs(got - pts).max() <= 0.5


# --------------------------------------------------------------------------- evaluation


def test_oracle_synthetic(synth_people):
    res = evaluate(oracle(), synth_people, INPUT, with_meta=True)
    assert res.n_people == len(synth_people)
    assert res.ap > 0.95 and res.pck > 0.95 and res.ar > 0.95, res


def test_oracle_flip_test(synth_people):
    res = evaluate(oracle(), synth_people, INPUT, with_meta=True, flip_test=True)
    assert res.ap > 0.95 and res.pck > 0.95, res


def test_shifted_prediction_is_worse(synth_people):
    good = evaluate(oracle(), synth_people, INPUT, with_meta=True)
    bad = evaluate(oracle(shift=(12.0, 8.0)), synth_people, INPUT, with_meta=True)
    assert bad.ap < good.ap - 0.3 and bad.pck < good.pck - 0.3, (good, bad)


def test_plain_predict_and_torch_output(synth_people):
    import torch

    calls = []

    def predict(x):                     # any backend: here a torch tensor comes back
        calls.append(x.shape)
        return torch.zeros(1, 17, 64, 48)

    with pytest.warns(RuntimeWarning, match="constant"):
        res = evaluate(predict, synth_people[:3], INPUT)
    assert len(calls) == 3 and 0.0 <= res.ap < 0.5


@pytest.mark.skipif(not COCO_SAMPLE.is_dir(), reason="shared COCO sample not present")
def test_coco_sample_oracle():
    people = load_coco_keypoints(COCO_SAMPLE / "person_keypoints.json", COCO_SAMPLE / "images")
    assert len(people) == 12 and len({p.image_id for p in people}) == 4
    res = evaluate(oracle(), people, INPUT, with_meta=True)
    assert res.ap > 0.9 and res.pck > 0.9, res
    capped = load_coco_keypoints(COCO_SAMPLE / "person_keypoints.json", COCO_SAMPLE / "images",
                                 max_people=5)
    assert 0 < len(capped) <= 5
    # whole images only: every kept image keeps all its people
    for img_id in {p.image_id for p in capped}:
        assert sum(p.image_id == img_id for p in capped) == sum(p.image_id == img_id for p in people)


EXTRA = ["left_finger", "right_finger", "left_toe", "right_toe"]


def _more_names(data: dict, layout: str) -> dict:
    """``data`` with 21 keypoint names: Human-Art's layout (``keypoints`` the 17 COCO
    triplets, ``keypoints_21`` all) or every triplet in ``keypoints``, names reordered."""
    from pose_tuner.accuracy.dataset import COCO_KEYPOINT_NAMES

    data = json.loads(json.dumps(data))
    coco = list(COCO_KEYPOINT_NAMES)
    names = coco + EXTRA if layout == "humanart" else EXTRA[:2] + coco[::-1] + EXTRA[2:]
    for cat in data["categories"]:
        cat["keypoints"] = names
        cat.pop("skeleton", None)
    for i, a in enumerate(data["annotations"]):
        trip = {n: a["keypoints"][3 * j:3 * j + 3] for j, n in enumerate(coco)}
        trip.update({n: [float(i), 2.0 * i, 2] for n in EXTRA})
        full = [v for n in names for v in trip[n]]
        if layout == "humanart":
            a["keypoints_21"] = full
        else:
            a["keypoints"] = full
    return data


@pytest.mark.parametrize("layout", ["humanart", "all-in-keypoints"])
def test_category_with_more_names_reads_as_coco(synth, synth_people, tmp_path, layout):
    ann, images = synth
    p = tmp_path / "more.json"
    p.write_text(json.dumps(_more_names(json.loads(Path(ann).read_text()), layout)))
    people = load_coco_keypoints(p, images)
    assert [q.ann_id for q in people] == [q.ann_id for q in synth_people]
    for q, ref in zip(people, synth_people):
        np.testing.assert_array_equal(q.keypoints, ref.keypoints)
    assert people[0].gt.category["keypoints"][0] == "nose"
    res = evaluate(oracle(), people, INPUT, with_meta=True)
    assert res.ap > 0.95, res


def test_category_without_the_coco_names_keeps_its_own(synth, tmp_path):
    data = json.loads(Path(synth[0]).read_text())
    for cat in data["categories"]:
        cat["keypoints"] = [f"k{i}" for i in range(17)]
    p = tmp_path / "other.json"
    p.write_text(json.dumps(data))
    people = load_coco_keypoints(p, synth[1])
    assert people[0].gt.category["keypoints"][0] == "k0"


# --------------------------------------------------------------------------- bad inputs


def test_not_coco_json(tmp_path):
    p = tmp_path / "x.json"
    p.write_text(json.dumps({"foo": 1}))
    with pytest.raises(ValueError, match="not a COCO.*'annotations'"):
        load_coco_keypoints(p, tmp_path)
    det = {"images": [], "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1]}],
           "categories": [{"id": 1, "name": "person"}]}
    p.write_text(json.dumps(det))
    with pytest.raises(ValueError, match="keypoints"):
        load_coco_keypoints(p, tmp_path)
    p.write_text("not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_coco_keypoints(p, tmp_path)


def test_missing_images(synth, tmp_path):
    ann, img_dir = synth
    with pytest.raises(ValueError, match="does not exist"):
        load_coco_keypoints(ann, tmp_path / "nope")
    partial = tmp_path / "imgs"
    shutil.copytree(img_dir, partial)
    (partial / "000002.jpg").unlink()
    (partial / "000004.jpg").unlink()
    with pytest.raises(ValueError, match=r"2 of 6 image files are missing.*000002\.jpg"):
        load_coco_keypoints(ann, partial)


def test_empty_set(synth, tmp_path):
    ann, img_dir = synth
    data = json.loads(ann.read_text())
    for a in data["annotations"]:
        a["num_keypoints"] = 0
    p = tmp_path / "empty.json"
    p.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="empty set"):
        load_coco_keypoints(p, img_dir)
    with pytest.raises(ValueError, match="no instances"):
        evaluate(oracle(), [], INPUT)


@pytest.mark.parametrize("output, match", [
    (np.zeros((1, 5, 64, 48), np.float32), "5 keypoints"),
    (np.full((1, 17, 64, 48), np.nan, np.float32), "NaN"),
    (np.zeros((1, 17, 50, 48), np.float32), "cannot decode"),
    ((np.zeros((1, 17, 384)), np.zeros((1, 17, 300))), "cannot decode"),
    ((np.zeros((1, 17, 8)),) * 3, "cannot decode"),
])
def test_bad_outputs(synth_people, output, match):
    with pytest.raises(ValueError, match=match):
        evaluate(lambda x: output, synth_people[:1], INPUT)


def test_nan_after_first_output(synth_people):
    outs = [np.zeros((1, 17, 64, 48), np.float32), np.full((1, 17, 64, 48), np.nan, np.float32)]
    with pytest.raises(ValueError, match="NaN"):
        evaluate(lambda x: outs.pop(0), synth_people[:2], INPUT)


def test_bad_normalisation(synth_people):
    with pytest.raises(ValueError, match="0-255"):
        evaluate(oracle(), synth_people[:1], INPUT, mean=(123.7, 116.3, 103.5),
                 std=(58.4, 57.1, 57.4), with_meta=True)
