"""Small ONNX graph rewrites applied before a model is imported into Relax."""

from __future__ import annotations

import onnx
from onnx import helper


def clip_to_min_max(model: onnx.ModelProto) -> onnx.ModelProto:
    """Replace every ``Clip(x, lo, hi)`` by ``Min(Max(x, lo), hi)`` (a copy).

    TVM 0.27's ONNX importer lowers Clip to a ``call_tir`` of its own TIR function, which
    ``relax.transform.ToMixedPrecision`` cannot look through ("Expected TensorType, but
    got R.Callable"); Max and Min import as plain ``R.maximum`` / ``R.minimum``.
    Clip's optional bounds stay optional: a missing bound drops its op.
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    nodes = []
    for n in out.graph.node:
        if n.op_type != "Clip":
            nodes.append(n)
            continue
        if len(n.input) == 1 and any(a.name in ("min", "max") for a in n.attribute):
            raise ValueError(f"Clip node {n.name!r} uses the opset < 11 attribute form; "
                             "re-export the model with opset >= 11")
        x = n.input[0]
        lo = n.input[1] if len(n.input) > 1 and n.input[1] else None
        hi = n.input[2] if len(n.input) > 2 and n.input[2] else None
        cur = x
        if lo is not None:
            nxt = n.output[0] if hi is None else f"{n.output[0]}__max"
            nodes.append(helper.make_node("Max", [cur, lo], [nxt], name=f"{n.name}__max"))
            cur = nxt
        if hi is not None:
            nodes.append(helper.make_node("Min", [cur, hi], [n.output[0]], name=f"{n.name}__min"))
            cur = n.output[0]
        if cur != n.output[0]:
            nodes.append(helper.make_node("Identity", [cur], [n.output[0]], name=f"{n.name}__id"))
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    return out
