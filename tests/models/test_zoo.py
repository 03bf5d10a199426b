"""Fast tests for pose_tuner.models.zoo (tiny inputs; H and W must be multiples of 32)."""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx
import pytest
import torch

from pose_tuner.models.zoo import (
    DEFAULT_MODEL,
    ZOO,
    ModelSpec,
    build_model,
    get_spec,
    list_models,
    structured_inputs,
)
from pose_tuner.models.export import (
    check_onnx,
    count_flops,
    count_macs,
    count_params,
    export_onnx,
    run_onnx,
)
from pose_tuner.models.hashing import model_hash

SIZE = (96, 64)  # tiny, non-square; stride-32 map is 3x2
WIDTH = 0.5
MODELS = list_models()

# The CI box is a small shared machine: one intra-op thread avoids OpenMP
# spin-wait slowdowns under contention and keeps the suite light.
torch.set_num_threads(1)


@pytest.fixture(scope="module", params=MODELS)
def built(request):
    name = request.param
    return name, build_model(name, input_size=SIZE, width_mult=WIDTH, seed=0)


def _spatial_ratio(y: torch.Tensor) -> torch.Tensor:
    """Per-channel spatial std / mean |value| for one output (C, H, W)."""
    flat = y.flatten(1)
    return flat.std(dim=1) / flat.abs().mean(dim=1).clamp_min(1e-12)


def test_registry():
    assert DEFAULT_MODEL == "shufflenetv2_fpn"
    assert set(MODELS) == {"mobilenetv2_deconv", "shufflenetv2_fpn"}
    assert MODELS == sorted(ZOO)
    for name, spec in ZOO.items():
        assert isinstance(spec, ModelSpec) and spec.name == name
        assert spec.default_input_size == (256, 192)
        assert spec.num_keypoints == 17 and spec.output_stride == 4
        assert callable(spec.factory) and spec.description
    spec = get_spec(DEFAULT_MODEL)
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.name = "x"  # type: ignore[misc]


def test_unknown_model_raises_with_known_names():
    with pytest.raises(KeyError) as ei:
        get_spec("resnet9000")
    msg = str(ei.value)
    assert "resnet9000" in msg
    for name in MODELS:
        assert name in msg
    with pytest.raises(KeyError):
        build_model("resnet9000", input_size=SIZE)


@pytest.mark.parametrize("size", [(100, 64), (96, 48), (0, 64)])
def test_bad_input_size(size):
    with pytest.raises(ValueError):
        build_model(DEFAULT_MODEL, input_size=size, width_mult=WIDTH)


def test_output_shape_and_eval_mode(built):
    name, model = built
    assert not model.training
    x = structured_inputs(1, SIZE, seed=3)
    with torch.no_grad():
        y = model(x)
    assert y.shape == (1, 17, SIZE[0] // 4, SIZE[1] // 4)
    assert y.dtype == torch.float32
    assert torch.isfinite(y).all()
    # fully convolutional: another multiple of 32 works too
    with torch.no_grad():
        y2 = model(structured_inputs(1, (64, 64), seed=3))
    assert y2.shape == (1, 17, 16, 16)


def test_outputs_vary_spatially_and_across_inputs(built):
    name, model = built
    x = structured_inputs(2, SIZE, seed=11)
    with torch.no_grad():
        y = model(x)
    ratio = _spatial_ratio(y[0])
    assert ratio.min().item() > 0.05, f"{name}: near-constant heatmap channel {ratio.min():.4f}"
    rel = ((y[0] - y[1]).abs().mean() / y[0].abs().mean()).item()
    assert rel > 0.05, f"{name}: outputs barely depend on input ({rel:.4f})"
    # also with a plain gaussian-noise image
    xn = torch.randn(1, 3, *SIZE, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        yn = model(xn)
    assert _spatial_ratio(yn[0]).median().item() > 0.05


def test_deterministic_init_and_global_rng_untouched():
    torch.manual_seed(1234)
    before = torch.get_rng_state()
    a = build_model("shufflenetv2_fpn", input_size=(64, 64), width_mult=WIDTH, seed=5)
    assert torch.equal(before, torch.get_rng_state())
    b = build_model("shufflenetv2_fpn", input_size=(64, 64), width_mult=WIDTH, seed=5)
    c = build_model("shufflenetv2_fpn", input_size=(64, 64), width_mult=WIDTH, seed=6)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa if sa[k].is_floating_point())


def test_factory_kwargs():
    m = build_model("mobilenetv2_deconv", input_size=(64, 64), width_mult=WIDTH,
                    deconv_channels=32, num_deconv=3, num_keypoints=5)
    with torch.no_grad():
        y = m(structured_inputs(1, (64, 64)))
    assert y.shape == (1, 5, 16, 16)
    assert m.deconv_layers[0].out_channels == 32


def test_onnx_roundtrip(built, tmp_path):
    name, model = built
    path = export_onnx(model, tmp_path / f"{name}.onnx", SIZE, opset=17)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    assert proto.opset_import[0].version == 17
    dims = lambda v: [d.dim_value for d in v.type.tensor_type.shape.dim]  # noqa: E731
    assert [i.name for i in proto.graph.input] == ["input"]
    assert [o.name for o in proto.graph.output] == ["heatmaps"]
    assert dims(proto.graph.input[0]) == [1, 3, *SIZE]
    assert dims(proto.graph.output[0]) == [1, 17, SIZE[0] // 4, SIZE[1] // 4]
    ops = {n.op_type for n in proto.graph.node}
    assert not ops & {"Shape", "ATen", "Loop", "If"}, ops

    x = structured_inputs(1, SIZE, seed=21)
    out = run_onnx(path, x)
    with torch.no_grad():
        ref = model(x).numpy()
    np.testing.assert_allclose(out, ref, rtol=1e-3, atol=1e-4 * np.abs(ref).max())
    assert check_onnx(model, path, SIZE) < 1e-3

    h = model_hash(path)
    assert len(h) == 16 and int(h, 16) >= 0
    assert model_hash(path) == h
    # re-export is byte-identical (hash usable as a cache key)
    path2 = export_onnx(model, tmp_path / f"{name}_again.onnx", SIZE)
    assert model_hash(path2) == h


def test_params_and_flops(built):
    name, model = built
    assert count_params(model) > 0
    flops = count_flops(model, SIZE)
    assert flops > 0 and flops == 2 * count_macs(model, SIZE)
    # fully convolutional -> flops scale with the number of pixels
    assert count_flops(model, (2 * SIZE[0], 2 * SIZE[1])) == 4 * flops


def test_model_flops_at_256x192():
    # weights don't matter for counting: build cheaply at a tiny size
    model = build_model("mobilenetv2_deconv", input_size=(64, 64))
    flops = count_flops(model, (256, 192))
    assert 2.5e9 < flops < 3.8e9, flops
    assert 8e6 < count_params(model) < 11e6
    model = build_model(DEFAULT_MODEL, input_size=(64, 64))
    assert 0.25e9 < count_flops(model, (256, 192)) < 0.35e9
    assert 0.8e6 < count_params(model) < 0.95e6


def test_default_model_varies_at_full_size():
    model = build_model(DEFAULT_MODEL)  # (256, 192), width 1.0
    x = structured_inputs(2, (256, 192), seed=99)
    with torch.no_grad():
        y = model(x)
    assert y.shape == (2, 17, 64, 48)
    assert _spatial_ratio(y[0]).min().item() > 0.05
    assert ((y[0] - y[1]).abs().mean() / y[0].abs().mean()).item() > 0.05


def test_the_default_model_ships_trained_weights_that_load():
    """The committed checkpoint is found where the package installs it (a moved folder once
    made the zoo fall back to seeded weights without a word)."""
    from pose_tuner.models.zoo import DEFAULT_MODEL, build_model
    from pose_tuner.models.zoo.weights import WEIGHTS_DIR, load_trained

    assert (WEIGHTS_DIR / f"{DEFAULT_MODEL}.pt").is_file()
    trained = load_trained(DEFAULT_MODEL)
    assert trained is not None and trained.trained_meta
    built = build_model(DEFAULT_MODEL, input_size=(64, 64))
    seeded = build_model(DEFAULT_MODEL, input_size=(64, 64), trained=False)

    def first(m):
        return next(m.parameters()).detach()

    assert torch.equal(first(built), first(trained))
    assert not torch.equal(first(built), first(seeded))
