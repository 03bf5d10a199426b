"""ONNX Runtime's side of the int8 path: QDQ quantization and its exact reference.

* :func:`quantize_qdq` – ONNX Runtime post-training static quantization (QDQ format,
  u8 activations, per-channel s8 weights) with a choice of calibration method
  (:data:`CALIBRATION_METHODS`);
* :func:`exact_reference` – the QDQ model with its s8 weights stored as u8 (zero point
  +128, the same real values), which ONNX Runtime computes exactly on every ISA: its U8S8
  kernels on AVX2 / AVX-512 without VNNI use ``vpmaddubsw``, which saturates (outputs 10
  quantization steps off on a small test net), while its U8U8 kernels widen to int16.
  :data:`EXACT_RULES_KEY` marks the version of its rules in the model's metadata.

Imports no TVM: the ONNX Runtime baseline uses it too.
"""

from __future__ import annotations

import numpy as np

#: calibration method names accepted by :func:`quantize_qdq`
CALIBRATION_METHODS = ("minmax", "percentile", "entropy")


def quantize_qdq(onnx_path: str, calib: np.ndarray, out_path: str, method: str = "minmax",
                 weight_bits: int = 8, shared_concat: bool = True) -> str:
    """Static INT8 QDQ model of ``onnx_path`` calibrated on ``calib`` (N, C, H, W float32).

    u8 activations (per tensor), s8 symmetric per-channel weights: the u8 x s8 products
    the x86 int8 kernels compute. ``method`` is ``"minmax"``, ``"percentile"`` or
    ``"entropy"`` (ONNX Runtime's ``CalibrationMethod``). ``weight_bits=7`` quantizes the
    weights to [-64, 64] (ONNX Runtime's ``reduce_range``), for the kernels whose 16-bit
    pair sums would saturate with 8 (``Target.int8_weight_bits``).

    With ``shared_concat`` every ``Concat`` gets one set of quantization parameters for its
    inputs and its output (:func:`shared_concat_ranges`, as OpenVINO's NNCF does), so that
    it moves 8-bit values instead of requantizing them; this costs a second calibration
    pass, only for models with such concatenations. Returns ``out_path``.
    """
    from onnxruntime.quantization import (
        CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static,
    )
    import onnxruntime as ort

    methods = {
        "minmax": CalibrationMethod.MinMax,
        "percentile": CalibrationMethod.Percentile,
        "entropy": CalibrationMethod.Entropy,
    }
    if method not in methods:
        raise ValueError(
            f"unknown calibration method {method!r}; expected one of "
            f"{', '.join(CALIBRATION_METHODS)}"
        )
    calib = np.asarray(calib)
    if weight_bits not in (7, 8):
        raise ValueError(f"weight_bits must be 7 or 8, got {weight_bits}")
    if calib.ndim != 4 or len(calib) == 0:
        raise ValueError(f"calibration data must be (N, C, H, W) with N >= 1, got {calib.shape}")
    name = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"]).get_inputs()[0].name

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(calib[i:i + 1] for i in range(len(calib)))

        def get_next(self):
            x = next(self.it, None)
            return None if x is None else {name: np.ascontiguousarray(x, np.float32)}

    def run(extra_options=None):
        quantize_static(
            onnx_path, out_path, Reader(), quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
            calibrate_method=methods[method], reduce_range=weight_bits == 7,
            extra_options=extra_options,
        )

    run()
    if shared_concat:
        import onnx

        float_model = onnx.load(onnx_path, load_external_data=False)
        ranges = shared_concat_ranges(onnx.load(out_path), _tensor_names(float_model))
        if ranges:
            run({"TensorQuantOverrides": {
                name: [{"rmin": np.float32(lo), "rmax": np.float32(hi)}]
                for name, (lo, hi) in ranges.items()}})
    return out_path


#: ops that ONNX Runtime's QDQ format gives their input's quantization parameters
#: (checked per node: a node counts only where its input and output parameters are equal)
_PASS_THROUGH = ("Reshape", "Transpose", "Slice", "Split", "Squeeze", "Unsqueeze", "Flatten",
                 "MaxPool", "Gather", "Identity")


def _tensor_names(model) -> set[str]:
    """The names of a model's graph inputs and node outputs."""
    return {i.name for i in model.graph.input} | {o for n in model.graph.node for o in n.output}


#: the suffix ONNX Runtime's QDQ quantizer gives a graph output's tensor when it quantizes it
_RENAMED_OUTPUT = "_QuantizeLinear_Input"


def shared_concat_ranges(model, float_names: set[str] | None = None
                         ) -> dict[str, tuple[float, float]]:
    """Calibration ranges that give each ``Concat`` of a QDQ model one set of parameters.

    Tensors are grouped: a ``Concat``'s quantized inputs with its output, and a tensor
    with the output of a data-movement op (reshape, transpose, slice, max-pool...) that
    shares its parameters. Every tensor of a group with a ``Concat`` gets the union of the
    group's ranges (read back from each tensor's scale and zero point). ShuffleNet's units
    (split, a branch, concatenate, channel shuffle) chain each stage into one group.
    Returns tensor name -> (rmin, rmax); empty when no ``Concat`` mixes parameters. With
    ``float_names`` (the tensors of the model that was quantized) the names are those of
    that model, as ``TensorQuantOverrides`` wants them: a graph output that the quantizer
    renamed (``..._QuantizeLinear_Input``) gets its own name back, and a group with a
    tensor that cannot be named is left as it is.
    """
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}

    def params(q_node):
        scale = float(numpy_helper.to_array(inits[q_node.input[1]]))
        zp = int(numpy_helper.to_array(inits[q_node.input[2]])) if len(q_node.input) > 2 else 0
        return scale, zp

    quantized = {}  # float tensor -> (scale, zero point) of its QuantizeLinear
    for node in model.graph.node:
        if (node.op_type == "QuantizeLinear" and node.input[1] in inits
                and numpy_helper.to_array(inits[node.input[1]]).size == 1):
            quantized[node.input[0]] = params(node)

    def source(name):
        """The float tensor behind a DequantizeLinear output (None for a constant)."""
        dq = producer.get(name)
        if dq is None or dq.op_type != "DequantizeLinear":
            return None
        q = producer.get(dq.input[0])
        return q.input[0] if q is not None and q.op_type == "QuantizeLinear" else None

    parent: dict[str, str] = {}

    def find(x):
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(a, b):
        parent[find(a)] = find(b)

    concats = []
    for node in model.graph.node:
        first = source(node.input[0]) if node.input else None
        if node.op_type == "Concat":
            srcs = [source(i) for i in node.input]
            if node.output[0] in quantized and srcs and all(s in quantized for s in srcs):
                for s in srcs:
                    union(s, node.output[0])
                concats.append(node.output[0])
        elif node.op_type in _PASS_THROUGH and first in quantized:
            for out in node.output:
                if out in quantized and quantized[out] == quantized[first]:
                    union(first, out)
    groups: dict[str, list[str]] = {}
    for name in list(parent):
        groups.setdefault(find(name), []).append(name)

    def named(name):
        if float_names is None or name in float_names:
            return name
        if name.endswith(_RENAMED_OUTPUT) and name[:-len(_RENAMED_OUTPUT)] in float_names:
            return name[:-len(_RENAMED_OUTPUT)]
        return None

    ranges = {}
    for root in {find(c) for c in concats}:
        members = groups[root]
        names = [named(m) for m in members]
        if len({quantized[m] for m in members}) == 1 or None in names:
            continue  # already shared, or not nameable in the float model
        lo = min(-quantized[m][1] * quantized[m][0] for m in members)
        hi = max((255 - quantized[m][1]) * quantized[m][0] for m in members)
        for name in names:
            ranges[name] = (min(lo, 0.0), max(hi, 0.0))
    return ranges


#: metadata key and value that mark a reference made by today's rules of :func:`exact_reference`
EXACT_RULES_KEY = "pose_tuner.exact_reference"
EXACT_RULES = "2"  # 1: u8 weights; 2: + quantized Add as Sum


def _exact_rules(model) -> str | None:
    return next((p.value for p in model.metadata_props if p.key == EXACT_RULES_KEY), None)


def exact_reference(qdq_path: str, out_path: str | None = None) -> str:
    """A copy of the QDQ model that ONNX Runtime computes exactly on every x86 ISA.

    The weights' ``DequantizeLinear`` inputs (s8 constants, zero point z) become u8
    constants w + 128 with zero point z + 128: the same real values, so the same model.
    ONNX Runtime then runs its U8U8 integer kernels, which widen to int16 and never
    saturate; its U8S8 kernels use ``vpmaddubsw`` on CPUs without VNNI, whose int16 pair
    sums saturate with 8-bit weights (its documentation says so).

    A quantized ``Add`` (``DequantizeLinear`` inputs, ``QuantizeLinear`` consumers, a
    residual add) becomes ``Sum``, which ONNX Runtime leaves unfused: it then computes the
    graph's own float maths (dequantize, add, quantize rounding half to even). Fused into
    its ``QLinearAdd`` kernel it approximates them: on a MobileNetV2 residual add it gave
    118 where the graph's maths give 119 (3.500005 steps), on 7 of 24,576 elements, and
    a residual network amplified that to 12% of the output range.

    Written beside ``qdq_path`` (``.exact.onnx``) unless ``out_path`` is given; reused
    when up to date and made by this version of the rules.
    """
    import os

    import onnx
    from onnx import numpy_helper

    out_path = out_path or qdq_path[:-5] + ".exact.onnx"
    if (os.path.exists(out_path) and os.path.getmtime(out_path) >= os.path.getmtime(qdq_path)
            and _exact_rules(onnx.load(out_path, load_external_data=False)) == EXACT_RULES):
        return out_path
    model = onnx.load(qdq_path)
    inits = {i.name: i for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type != "DequantizeLinear" or node.input[0] not in inits or len(node.input) < 3:
            continue
        w = numpy_helper.to_array(inits[node.input[0]])
        zp_init = inits.get(node.input[2])
        if w.dtype != np.int8 or zp_init is None:
            continue
        zp = numpy_helper.to_array(zp_init)
        inits[node.input[0]].CopyFrom(numpy_helper.from_array(
            (w.astype(np.int16) + 128).astype(np.uint8), node.input[0]))
        zp_init.CopyFrom(numpy_helper.from_array(
            (zp.astype(np.int16) + 128).astype(np.uint8), node.input[2]))
    producers = {o: n for n in model.graph.node for o in n.output}
    consumers: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    for node in model.graph.node:
        if (node.op_type == "Add" and node.domain in ("", "ai.onnx")
                and all(i in producers and producers[i].op_type == "DequantizeLinear"
                        for i in node.input)
                and consumers.get(node.output[0])
                and all(c.op_type == "QuantizeLinear" for c in consumers[node.output[0]])):
            node.op_type = "Sum"
    onnx.helper.set_model_props(model, {**{p.key: p.value for p in model.metadata_props},
                                        EXACT_RULES_KEY: EXACT_RULES})
    tmp = f"{out_path}.tmp-{os.getpid()}"
    onnx.save(model, tmp)
    os.replace(tmp, out_path)
    return out_path
