import os

import numpy as np
import pytest


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory):
    """A small conv + deconv heatmap model with non-trivial weights, as ONNX."""
    import torch

    torch.manual_seed(0)

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = torch.nn.Conv2d(3, 16, 3, 2, 1)
            self.bn = torch.nn.BatchNorm2d(16)
            self.dw = torch.nn.Conv2d(16, 16, 3, 1, 1, groups=16)
            self.pw = torch.nn.Conv2d(16, 24, 1)
            self.de = torch.nn.ConvTranspose2d(24, 16, 4, 2, 1, bias=False)
            self.out = torch.nn.Conv2d(16, 5, 1)

        def forward(self, x):
            x = torch.nn.functional.relu6(self.bn(self.c1(x)))
            x = torch.relu(self.pw(self.dw(x)))
            return self.out(torch.relu(self.de(x)))

    m = Tiny().eval()
    with torch.no_grad():
        m.bn.running_mean.uniform_(-0.2, 0.2)
        m.bn.running_var.uniform_(0.5, 1.5)
    path = tmp_path_factory.mktemp("tiny") / "tiny.onnx"
    torch.onnx.export(m, (torch.randn(1, 3, 32, 32),), str(path), input_names=["input"],
                      output_names=["heatmaps"], opset_version=17, dynamo=False)
    return str(path)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def pytest_configure(config):
    os.environ.setdefault("TVM_NUM_THREADS", "2")
