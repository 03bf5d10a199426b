import numpy as np
import pytest
import torch

tvm = pytest.importorskip("tvm")


@pytest.mark.parametrize(
    "k,s,p,op,cin,cout,h,w",
    [(4, 2, 1, 0, 8, 6, 5, 7), (3, 2, 1, 1, 4, 5, 6, 4), (2, 2, 0, 0, 3, 4, 4, 4),
     (4, 2, 0, 0, 3, 3, 3, 5), (5, 3, 2, 2, 2, 3, 4, 3),
     (2, 3, 0, 1, 3, 2, 4, 3)],  # kernel < stride: the dense fallback
)
def test_subpixel_rewrite_matches_torch(tmp_path, k, s, p, op, cin, cout, h, w):
    from tvm import relax

    from pose_tuner.compile.relax_passes import SubPixelConvTranspose
    from pose_tuner.compile.frontend import import_onnx

    torch.manual_seed(0)
    m = torch.nn.ConvTranspose2d(cin, cout, k, s, p, output_padding=op, bias=True).eval()
    x = torch.randn(1, cin, h, w)
    path = str(tmp_path / "d.onnx")
    torch.onnx.export(m, (x,), path, opset_version=17, dynamo=False)
    pas = SubPixelConvTranspose()
    mod = pas(import_onnx(path))
    assert pas.rewritten == 1
    assert "conv2d_transpose" not in mod.script()
    ex = tvm.compile(mod, target=tvm.target.Target({"kind": "llvm"}))
    out = relax.VirtualMachine(ex, tvm.cpu())["main"](tvm.runtime.tensor(x.numpy())).numpy()
    ref = m(x).detach().numpy()
    assert out.shape == ref.shape
    np.testing.assert_allclose(out, ref, atol=1e-5, rtol=1e-5)


def test_grouped_deconv_is_left_alone(tmp_path):
    from pose_tuner.compile.relax_passes import SubPixelConvTranspose
    from pose_tuner.compile.frontend import import_onnx

    m = torch.nn.ConvTranspose2d(4, 4, 4, 2, 1, groups=2).eval()
    path = str(tmp_path / "g.onnx")
    torch.onnx.export(m, (torch.randn(1, 4, 5, 5),), path, opset_version=17, dynamo=False)
    pas = SubPixelConvTranspose()
    mod = pas(import_onnx(path))
    assert pas.rewritten == 0
    assert "conv2d_transpose" in mod.script()
