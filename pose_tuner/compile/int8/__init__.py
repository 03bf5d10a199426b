"""Integer int8 compute for ONNX QDQ models in TVM 0.27.

TVM's ONNX frontend imports a QDQ model (QuantizeLinear / DequantizeLinear around every
conv) as ``dequantize -> float conv2d -> quantize``: the convs still run in float, so an
"int8" build is no faster than fp32. The int8 path, in the order its stages run:

1. :mod:`~pose_tuner.compile.int8.quantize` – ONNX Runtime static quantization of the
   float model to QDQ (``quantize_qdq``), and the copy of it ONNX Runtime computes exactly
   on every ISA, the numerical reference (``exact_reference``);
2. :mod:`pose_tuner.compile.frontend` imports the QDQ model into Relax;
3. :mod:`~pose_tuner.compile.int8.rewrite` – ``integer_rewrite`` turns the QDQ float
   patterns (read by :mod:`~pose_tuner.compile.int8.matching`) into integer compute in a
   packed layout, built from the TE computes of :mod:`~pose_tuner.compile.int8.te`;
4. :mod:`pose_tuner.compile.pipeline` prepares the module; tuning
   (:mod:`pose_tuner.compile.tuning`) schedules the packed convs with the target's int8
   kernel (:mod:`pose_tuner.compile.kernels`) and the packed depthwise block with the
   custom rule of :mod:`~pose_tuner.compile.int8.rules`.

Numerics follow ONNX Runtime's own integer kernels (``QLinearConv``): exact int32
accumulation with the int32 bias, then ``nearbyint(acc * float32(s_x * s_w / s_y)) + zp``.
"""
