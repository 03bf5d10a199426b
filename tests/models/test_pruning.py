import pytest
import torch
from torch import nn

from pose_tuner.models.pruning import PruningError, prune_model


class Tiny(nn.Module):
    """conv-bn-relu, a residual block and a depthwise conv: couplings torch-pruning must keep."""

    def __init__(self, k=5):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 32, 3, 2, 1), nn.BatchNorm2d(32), nn.ReLU())
        self.res = nn.Sequential(nn.Conv2d(32, 32, 3, 1, 1), nn.BatchNorm2d(32), nn.ReLU(),
                                 nn.Conv2d(32, 32, 3, 1, 1), nn.BatchNorm2d(32))
        self.dw = nn.Sequential(nn.Conv2d(32, 64, 1), nn.ReLU(), nn.Conv2d(64, 64, 3, 1, 1, groups=64),
                                nn.ReLU())
        self.head = nn.Conv2d(64, k, 1)

    def forward(self, x):
        y = self.stem(x)
        y = torch.relu(y + self.res(y))
        return self.head(self.dw(y))


def _convs(m):
    return {n: mod for n, mod in m.named_modules() if isinstance(mod, nn.Conv2d)}


def test_pruning_removes_real_channels_and_keeps_the_model_valid():
    torch.manual_seed(0)
    model = Tiny().eval()
    x = torch.randn(1, 3, 32, 32)
    pruned, info = prune_model(model, 0.5, x)
    convs = _convs(pruned)
    # real channels removed: weights are smaller, not masked
    assert convs["stem.0"].weight.shape[0] == 16
    assert convs["dw.0"].weight.shape[0] == 32 and convs["dw.2"].groups == 32
    # residual coupling: both ends of the skip have the same width
    assert convs["res.3"].weight.shape[0] == convs["stem.0"].weight.shape[0]
    # the heatmap head keeps its keypoints
    assert convs["head"].weight.shape[0] == 5
    assert pruned(x).shape == model(x).shape
    assert info.params_after < 0.5 * info.params_before
    assert info.macs_after < info.macs_before
    assert all(after % 8 == 0 for _, _, after in info.changed)
    # the input model is untouched
    assert _convs(model)["stem.0"].weight.shape[0] == 32


def test_round_to_and_ratio_zero():
    model = Tiny().eval()
    x = torch.randn(1, 3, 32, 32)
    same, info = prune_model(model, 0.0, x)
    assert info.params_after == info.params_before and not info.changed
    pruned, info = prune_model(model, 0.3, x, round_to=16)
    assert all(after % 16 == 0 for _, _, after in info.changed)


def test_bad_arguments():
    x = torch.randn(1, 3, 32, 32)
    with pytest.raises(PruningError):
        prune_model(Tiny(), 1.0, x)
    with pytest.raises(PruningError, match="importance"):
        prune_model(Tiny(), 0.2, x, importance="taylor")


@pytest.mark.parametrize("name", ["shufflenetv2_fpn", "mobilenetv2_deconv"])
def test_zoo_models_prune(name):
    from pose_tuner.models.zoo import build_model

    model = build_model(name, (64, 64))
    x = torch.randn(1, 3, 64, 64)
    pruned, info = prune_model(model, 0.5, x)
    assert pruned(x).shape == model(x).shape
    assert info.macs_after < 0.8 * info.macs_before
    assert info.params_after < info.params_before
