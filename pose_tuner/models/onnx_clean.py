"""ONNX hygiene: the one clean-up every model goes through before anything else uses it.

A user's ONNX file may come from any exporter and any year. Before ONNX Runtime
quantizes it, OpenVINO reads it or TVM imports it, :func:`clean_onnx` writes a cleaned
copy, in this order:

1. **legacy attributes** the version converter cannot take: ``BatchNormalization``'s
   ``spatial`` (opsets 7-8). With per-channel statistics it changes nothing at inference
   and is dropped; with per-activation statistics (``spatial=0``, shape (C, H, W)) the
   node becomes the ``Mul`` and ``Add`` it computes;
2. **a fixed batch of 1** where the batch dimension is symbolic (the tuner measures
   batch-1 latency; height and width must be fixed by the model);
3. **an opset upgrade** to at least :data:`MIN_OPSET` with onnx's version converter
   (ONNX Runtime's quantizer and TVM's importer want 13 or newer);
4. **one interface** for every later step: one NCHW image input (an NHWC input gets a
   ``Transpose`` in front) and one output, the pose head. The head is the one output that
   decodes as heatmaps (1, K, H/s, W/s), or the two that decode as SimCC vectors
   (1, K, W*r) and (1, K, H*r), concatenated into one (1, K, (W+H)*r) that
   :class:`pose_tuner.accuracy.SimCCDecoder` splits again; ``output`` names it where several
   outputs could be. Other outputs are dropped with the nodes only they need;
5. **onnxslim** (a maintained optimizer): shape inference, constant folding, dead-node
   removal and ``BatchNormalization`` folded into the convolution before it;
6. **onnx's checker** on the result.

The cleaned model must equal the original: both run in ONNX Runtime on structured
inputs (:func:`pose_tuner.measure.inputs.structured_input`, outputs that vary; the original's
input transposed and its head's outputs concatenated as the interface step does), and a
difference above :data:`REL_TOL` of the output range refuses the model
(:class:`CleanupError`). The returned :class:`CleanedModel` records both files' hashes
and what each step did.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from pose_tuner.models.hashing import sha16

#: the lowest opset the cleaned model has
MIN_OPSET = 13
#: the largest difference between original and cleaned outputs, as a fraction of the
#: original output's range (float re-association from folding stays far below it)
REL_TOL = 1e-4
#: keypoints of a COCO pose head (preferred when several outputs could be the head)
COCO_KEYPOINTS = 17
#: structured inputs the two models are compared on
CHECK_SEEDS = (0, 1, 2)


class CleanupError(ValueError):
    """The model could not be cleaned, or cleaning changed what it computes."""


@dataclass(frozen=True)
class CleanedModel:
    """The cleaned copy of one ONNX model and what was done to it."""

    path: str
    #: the original model's input and pose-head output names, and whether its input is NHWC
    original_input: str
    original_outputs: tuple[str, ...]
    nhwc: bool
    original_hash: str
    cleaned_hash: str
    opset_before: int
    opset_after: int
    nodes_before: int
    nodes_after: int
    steps: tuple[str, ...]
    #: max |original - cleaned| over :data:`CHECK_SEEDS`, and the original's output range
    max_abs_diff: float
    output_range: float

    def summary(self) -> str:
        what = "; ".join(self.steps) if self.steps else "nothing to change"
        return (f"cleaned ({what}): {self.nodes_before} -> {self.nodes_after} nodes, "
                f"outputs equal to {self.max_abs_diff:.1e} (range {self.output_range:.3g})")


def _opset(model) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def _initializers(model) -> dict:
    from onnx import numpy_helper

    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def fix_batchnorm_spatial(model) -> list[str]:
    """Drop or lower ``BatchNormalization``'s legacy ``spatial`` attribute, in place."""
    from onnx import helper, numpy_helper

    consts = _initializers(model)
    dropped = lowered = 0
    nodes = []
    for node in model.graph.node:
        attr = next((a for a in node.attribute if a.name == "spatial"), None)
        if node.op_type != "BatchNormalization" or attr is None:
            nodes.append(node)
            continue
        stats = [consts.get(name) for name in node.input[1:5]]
        if attr.i == 1 or all(s is not None and s.ndim <= 1 for s in stats):
            node.attribute.remove(attr)
            dropped += 1
            nodes.append(node)
            continue
        if any(s is None for s in stats):
            raise CleanupError(f"BatchNormalization {node.name!r} has spatial=0 with statistics "
                               "that are not constants; export the model in inference mode")
        gamma, beta, mean, var = (s.astype(np.float32) for s in stats)
        eps = next((a.f for a in node.attribute if a.name == "epsilon"), 1e-5)
        scale = gamma / np.sqrt(var + eps)
        shift = beta - mean * scale
        base = node.output[0]
        names = (f"{base}__bn_scale", f"{base}__bn_shift", f"{base}__bn_scaled")
        model.graph.initializer.extend([
            numpy_helper.from_array(scale[None].astype(np.float32), names[0]),
            numpy_helper.from_array(shift[None].astype(np.float32), names[1]),
        ])
        nodes.append(helper.make_node("Mul", [node.input[0], names[0]], [names[2]]))
        nodes.append(helper.make_node("Add", [names[2], names[1]], [base]))
        lowered += 1
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    out = []
    if dropped:
        out.append(f"legacy BatchNormalization 'spatial' dropped ({dropped} nodes)")
    if lowered:
        out.append(f"per-activation BatchNormalization lowered to Mul+Add ({lowered} nodes)")
    return out


def fix_batch_dim(model) -> list[str]:
    """Set a symbolic batch dimension of every graph input and output to 1, in place."""
    fixed = []
    for vi in list(model.graph.input) + list(model.graph.output):
        dims = vi.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].ClearField("dim_param")
            dims[0].dim_value = 1
            fixed.append(vi.name)
    return [f"batch dimension fixed to 1 ({', '.join(fixed)})"] if fixed else []


def image_input(model) -> tuple[str, bool, tuple[int, int]]:
    """(name, is NHWC, (H, W)) of the model's one image input; :class:`CleanupError`
    for anything else."""
    consts = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in consts]
    if len(inputs) != 1:
        raise CleanupError(f"the model has {len(inputs)} inputs "
                           f"({', '.join(i.name for i in inputs)}); a pose model takes one image")
    inp = inputs[0]
    dims = [d.dim_value if d.HasField("dim_value") else None
            for d in inp.type.tensor_type.shape.dim]
    if len(dims) != 4 or None in dims[1:]:
        shown = ["?" if d is None else d for d in dims]
        raise CleanupError(f"input {inp.name!r} has shape {shown}; a pose model takes a "
                           "fixed-size image (1, 3, H, W) or (1, H, W, 3): export it with fixed "
                           "height and width")
    if dims[1] == 3:
        return inp.name, False, (dims[2], dims[3])
    if dims[3] == 3:
        return inp.name, True, (dims[1], dims[2])
    raise CleanupError(f"input {inp.name!r} has shape {dims}, not an RGB image (1, 3, H, W) "
                       "or (1, H, W, 3)")


def to_nchw(model, name: str) -> str:
    """Give the NHWC input ``name`` an NCHW input in front (a ``Transpose``), in place;
    returns the new input's name."""
    from onnx import helper

    inp = next(i for i in model.graph.input if i.name == name)
    elem = inp.type.tensor_type.elem_type
    _, h, w, c = (d.dim_value for d in inp.type.tensor_type.shape.dim)
    new = f"{name}_nchw"
    model.graph.input.remove(inp)
    model.graph.input.insert(0, helper.make_tensor_value_info(new, elem, [1, c, h, w]))
    model.graph.node.insert(0, helper.make_node("Transpose", [new], [name],
                                                perm=[0, 2, 3, 1], name=f"{name}_to_nhwc"))
    return new


def pose_head(shapes: dict[str, tuple[int, ...]], input_hw: tuple[int, int],
              wanted: str | None = None) -> tuple[str, ...]:
    """The output names that make the pose head, from every output's shape: ``wanted``
    (a name, or ``X,Y`` for SimCC) if given, else the one output or pair that a decoder
    of :mod:`pose_tuner.accuracy` reads (of several, the one with COCO's 17 keypoints).
    :class:`CleanupError` when none or several could be."""
    from pose_tuner.accuracy.decode import get_decoder

    def decodes(names) -> bool:
        try:
            get_decoder([shapes[n] for n in names], input_hw, num_keypoints=shapes[names[0]][1])
        except (ValueError, IndexError):
            return False
        return True

    listed = ", ".join(f"{n} {list(s)}" for n, s in shapes.items())
    if wanted:
        names = tuple(n.strip() for n in wanted.split(",") if n.strip())
        missing = [n for n in names if n not in shapes]
        if missing:
            raise CleanupError(f"--output {wanted}: the model has no output {missing[0]!r} "
                               f"(outputs: {listed})")
        if not decodes(names):
            raise CleanupError(f"--output {wanted}: {listed} is not a pose head (heatmaps "
                               "(1, K, H/s, W/s), or SimCC x and y vectors)")
        return names
    names = list(shapes)
    heads = [(n,) for n in names if len(shapes[n]) == 4 and decodes((n,))]
    pairs = [(x, y) for i, x in enumerate(names) for y in names[i + 1:]
             if len(shapes[x]) == len(shapes[y]) == 3]
    # SimCC x before y, as exporters write them; reversed where only that order decodes
    heads += [p if decodes(p) else p[::-1] for p in pairs if decodes(p) or decodes(p[::-1])]
    if not heads:
        raise CleanupError(f"no output is a pose head ({listed}); supported: heatmaps "
                           "(1, K, H/s, W/s), or SimCC vectors (1, K, W*r) and (1, K, H*r)")
    if len(heads) > 1:  # one with COCO's 17 keypoints beside auxiliary maps
        coco = [hd for hd in heads if shapes[hd[0]][1] == COCO_KEYPOINTS]
        heads = coco if len(coco) == 1 else heads
    if len(heads) > 1:
        raise CleanupError(f"several outputs could be the pose head ({listed}); name it with "
                           "--output NAME (or --output X,Y for SimCC)")
    return heads[0]


def keep_head(model, head: tuple[str, ...], shapes: dict) -> list[str]:
    """Make ``head`` the model's one output (two SimCC vectors concatenated), in place."""
    from onnx import TensorProto, helper

    dropped = [o.name for o in model.graph.output if o.name not in head]
    if len(head) == 1:
        keep = [o for o in model.graph.output if o.name == head[0]]
        del model.graph.output[:]
        model.graph.output.extend(keep)
        return [f"outputs {', '.join(dropped)} dropped"] if dropped else []
    (x, y), (_, k, wx), hy = head, shapes[head[0]], shapes[head[1]][2]
    name = f"{x}_{y}_concat"
    model.graph.node.append(helper.make_node("Concat", [x, y], [name], axis=2,
                                             name="simcc_concat"))
    del model.graph.output[:]
    model.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT,
                                                            [1, k, wx + hy]))
    return [f"SimCC outputs {x} and {y} concatenated"] + (
        [f"outputs {', '.join(dropped)} dropped"] if dropped else [])


def _session(model_bytes: bytes):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    # basic rewrites only (constant folding, Conv+BatchNormalization fusion): exporters
    # wrote BatchNormalization spatial=0 with per-channel statistics, which ONNX Runtime
    # runs once fused into the convolution (as every runtime reads it) and refuses alone
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    opts.log_severity_level = 3  # not a warning per initializer an IR-3 model lists as input
    try:
        return ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001
        raise CleanupError(f"ONNX Runtime cannot load the model: "
                           f"{str(exc).splitlines()[0][:200]}") from None


def _inputs(input_hw: tuple[int, int]) -> list[np.ndarray]:
    from pose_tuner.measure.inputs import structured_input

    return [structured_input((1, 3, *input_hw), seed=seed) for seed in CHECK_SEEDS]


def output_shapes(model_bytes: bytes, name: str, nhwc: bool, input_hw) -> dict:
    """Every output's shape, from one run of ONNX Runtime."""
    sess = _session(model_bytes)
    x = _inputs(input_hw)[0]
    outs = sess.run(None, {name: x.transpose(0, 2, 3, 1) if nhwc else x})
    return {o.name: tuple(int(d) for d in v.shape) for o, v in zip(sess.get_outputs(), outs)}


def compare(original: bytes, cleaned: bytes, name: str, nhwc: bool, head: tuple[str, ...],
            input_hw: tuple[int, int]) -> tuple[float, float]:
    """(max abs difference, output range) between the original model, fed as its
    interface wants and its head's outputs concatenated, and the cleaned one."""
    a_sess, b_sess = _session(original), _session(cleaned)
    b_in = b_sess.get_inputs()[0].name
    diff = rng = 0.0
    for x in _inputs(input_hw):
        a = a_sess.run(list(head), {name: x.transpose(0, 2, 3, 1) if nhwc else x})
        a = a[0] if len(a) == 1 else np.concatenate(a, axis=2)
        b = b_sess.run(None, {b_in: x})[0]
        if a.shape != b.shape:
            raise CleanupError(f"the cleaned model outputs {b.shape}, the original {a.shape}")
        diff = max(diff, float(np.max(np.abs(a.astype(np.float64) - b))))
        rng = max(rng, float(np.ptp(a)))
    return diff, rng


def clean_onnx(src: str, dst: str, report: Callable[[str], None] = lambda _m: None,
               output: str | None = None) -> CleanedModel:
    """Write the cleaned copy of the ONNX file ``src`` to ``dst``; see the module docstring.
    ``output`` names the pose head's output(s) (``X,Y`` for SimCC) where several could be.

    Raises :class:`CleanupError` with one line saying what failed."""
    import onnx
    import onnxslim
    from onnx import version_converter

    with open(src, "rb") as f:
        original = f.read()
    try:
        model = onnx.load_from_string(original)
    except Exception as exc:  # noqa: BLE001
        raise CleanupError(f"not an ONNX model: {str(exc).splitlines()[0][:200]}") from None
    opset_before, nodes_before = _opset(model), len(model.graph.node)
    steps = fix_batchnorm_spatial(model) + fix_batch_dim(model)
    name, nhwc, input_hw = image_input(model)
    if opset_before < MIN_OPSET:
        try:
            model = version_converter.convert_version(model, MIN_OPSET)
        except Exception as exc:  # noqa: BLE001 - the converter raises bare RuntimeErrors
            raise CleanupError(f"onnx's version converter cannot upgrade opset {opset_before} "
                               f"to {MIN_OPSET}: {str(exc).splitlines()[0][:200]}") from None
        steps.append(f"opset {opset_before} -> {MIN_OPSET}")
    # IR version 3 (opsets up to 8) wants every initializer listed as a graph input
    model.ir_version = max(model.ir_version,
                           onnx.helper.find_min_ir_version_for(model.opset_import))
    shapes = output_shapes(model.SerializeToString(), name, nhwc, input_hw)
    head = pose_head(shapes, input_hw, output)
    steps += keep_head(model, head, shapes)
    if nhwc:
        to_nchw(model, name)
        steps.append("NHWC input given an NCHW input (Transpose)")
    before = Counter(n.op_type for n in model.graph.node)
    try:
        model = onnxslim.slim(model)
    except Exception as exc:  # noqa: BLE001
        raise CleanupError(f"onnxslim failed: {str(exc).splitlines()[0][:200]}") from None
    if model is None:
        raise CleanupError("onnxslim failed on the model")
    after = Counter(n.op_type for n in model.graph.node)
    folded = before["BatchNormalization"] - after["BatchNormalization"]
    if folded:
        steps.append(f"{folded} BatchNormalization folded into convolutions")
    removed = sum(before.values()) - sum(after.values()) - folded
    if removed > 0:
        steps.append(f"{removed} more nodes folded or removed")
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:  # noqa: BLE001
        raise CleanupError(f"the cleaned model fails onnx's checker: "
                           f"{str(exc).splitlines()[0][:200]}") from None
    cleaned = model.SerializeToString()
    diff, rng = compare(original, cleaned, name, nhwc, head, input_hw)
    if not diff <= REL_TOL * max(rng, 1e-6):
        raise CleanupError(f"clean-up changed the outputs (max abs difference {diff:.3g}, "
                           f"{diff / max(rng, 1e-12):.1%} of the output range)")
    with open(dst, "wb") as f:
        f.write(cleaned)
    result = CleanedModel(dst, name, head, nhwc, sha16(original), sha16(cleaned),
                          opset_before, _opset(model), nodes_before, len(model.graph.node),
                          tuple(steps), diff, rng)
    report(result.summary())
    return result
