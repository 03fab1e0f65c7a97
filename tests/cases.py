"""Tables of hard cases (PyTorch OpInfo style).

``CONV2D_CASES``: (id, x_shape, w_shape, kwargs), each valid under the strict size rule unless
its kwargs say strict=False. ``LAYER_CASES``: one entry per layer type, for the layer contract.
"""

from typing import Callable, NamedTuple

from cnnkit import nn
from tests import oracle

CONV2D_CASES = [
    ("1x1", (2, 3, 5, 4), (4, 3, 1, 1), {}),
    ("1x1-stride2", (2, 3, 5, 5), (2, 3, 1, 1), dict(stride=2)),
    ("3x3-pad1", (2, 3, 6, 6), (4, 3, 3, 3), dict(pad=1)),
    ("5x5-mnist-like", (2, 1, 12, 12), (3, 1, 5, 5), {}),
    ("nonsquare-kernel", (2, 2, 7, 6), (3, 2, 3, 2), {}),
    ("stride-2-1", (1, 2, 7, 6), (2, 2, 3, 3), dict(stride=(2, 1))),
    ("pad-one-axis", (2, 2, 5, 5), (3, 2, 3, 3), dict(pad=(0, 1))),
    ("dilation2", (1, 2, 9, 9), (2, 2, 3, 3), dict(dilation=2)),
    ("dilation-2-3-pad", (1, 2, 8, 9), (2, 2, 2, 3), dict(dilation=(2, 3), pad=(1, 2))),
    ("stride2-pad1-11x11", (2, 3, 11, 11), (2, 3, 3, 3), dict(stride=2, pad=1)),
    ("batch1-C1-F1", (1, 1, 5, 5), (1, 1, 3, 3), {}),
    ("kernel-equals-input", (2, 3, 4, 4), (5, 3, 4, 4), {}),
    ("odd-sizes-stride3", (3, 2, 10, 7), (2, 2, 4, 1), dict(stride=3)),
    ("floor-even-resnet", (2, 2, 8, 8), (3, 2, 3, 3), dict(stride=2, pad=1, strict=False)),
    ("floor-big-drop", (1, 2, 9, 10), (2, 2, 2, 2), dict(stride=3, strict=False)),
    # batches of 5-7 that the chunk plans (tests/plans.py) cut unevenly, on every path of the
    # fast kernel: 1x1, wide stride-1 columns and tight strided ones, non-square throughout
    ("batch5-1x1-3x7", (5, 4, 3, 7), (6, 4, 1, 1), {}),
    ("batch7-3x2-pad-one-axis-wide", (7, 3, 9, 6), (4, 3, 3, 2), dict(pad=(1, 0))),
    ("batch6-stride-2-3-pad-tight", (6, 2, 11, 8), (3, 2, 3, 2), dict(stride=(2, 3), pad=(1, 0))),
]


# ----------------------------------------------------------------------------- layers
# One entry per layer type: tests/nn/test_layer_contract.py checks each against its PyTorch
# oracle, numerical gradients, its facts (shape, cost, label) against a forward, its config, its
# hooks and its spec token. Adding a layer to cnnkit means adding its entry here (and its oracle
# to tests/oracle.py); a test fails for every registered layer without one.


class LayerCase(NamedTuple):
    """``build(rng)`` makes the layer; ``x_shape`` is a batch it takes; ``oracle(module, x,
    dout)`` gives PyTorch's ``(out, [dx, then the gradient of each parameter in
    named_parameters order])``; ``inputs`` says how to draw x ("normal"; "away" from 0 for
    kinks at 0; "distinct" values so a max has no ties); ``spec`` is a pattern spec whose last
    token builds it, if the grammar has one."""

    build: Callable
    x_shape: tuple
    oracle: Callable
    inputs: str = "normal"
    spec: str | None = None


def _w(m):
    return m.weight.data


def _b(m):
    return None if m.bias is None else m.bias.data


LAYER_CASES = {
    "linear": LayerCase(lambda r: nn.Linear(12, 5, rng=r), (4, 3, 4),
                        lambda m, x, d: oracle.affine(x, _w(m).T, _b(m), d),
                        spec="INPUT[3x2x2] -> FC-5"),
    "conv": LayerCase(lambda r: nn.Conv2d(3, 4, 3, padding=1, rng=r), (2, 3, 6, 6),
                      lambda m, x, d: oracle.conv2d(x, _w(m), _b(m), 1, 1, 1, d),
                      spec="INPUT[3x6x6] -> CONV3-4"),
    "conv-grouped-floor": LayerCase(
        lambda r: nn.Conv2d(4, 6, 3, stride=2, padding=1, dilation=(1, 2), groups=2, bias=False,
                            strict=False, rng=r), (2, 4, 8, 9),
        lambda m, x, d: oracle.conv2d_grouped(x, _w(m), None, 2, 1, (1, 2), 2, d)),
    "local": LayerCase(lambda r: nn.LocallyConnected2d(2, 3, 3, input_size=(7, 6), stride=(2, 1),
                                                       padding=(0, 1), rng=r), (2, 2, 7, 6),
                       lambda m, x, d: oracle.locally_connected2d(x, _w(m), _b(m), (2, 1), (0, 1),
                                                                  1, d)),
    "maxpool": LayerCase(lambda r: nn.MaxPool2d(3, stride=2, padding=1), (2, 3, 7, 7),
                         lambda m, x, d: oracle.max_pool2d(x, 3, 2, 1, d), "distinct",
                         "INPUT[3x7x7] -> POOL3/2"),
    "avgpool": LayerCase(lambda r: nn.AvgPool2d(2), (2, 3, 4, 6),
                         lambda m, x, d: oracle.avg_pool2d(x, 2, 2, 0, d),
                         spec="INPUT[3x4x6] -> AVGPOOL2"),
    "l2pool": LayerCase(lambda r: nn.L2Pool2d((3, 2), stride=(2, 1)), (2, 2, 7, 5),
                        lambda m, x, d: oracle.l2_pool2d(x, (3, 2), (2, 1), d),
                        spec="INPUT[2x4x6] -> L2POOL2"),
    "globalavgpool": LayerCase(lambda r: nn.GlobalAvgPool2d(), (2, 3, 4, 5),
                               lambda m, x, d: oracle.global_avg_pool2d(x, d)),
    "relu": LayerCase(lambda r: nn.ReLU(), (3, 4, 5), lambda m, x, d: oracle.relu(x, d), "away",
                      "INPUT[4x5x1] -> RELU"),
    "leakyrelu": LayerCase(lambda r: nn.LeakyReLU(0.2), (3, 4, 5),
                           lambda m, x, d: oracle.leaky_relu(x, 0.2, d), "away"),
    "prelu": LayerCase(lambda r: nn.PReLU(4), (2, 4, 3, 5),
                       lambda m, x, d: oracle.prelu(x, _w(m), d), "away", "INPUT[4x3x5] -> PRELU"),
    "sigmoid": LayerCase(lambda r: nn.Sigmoid(), (3, 4, 5), lambda m, x, d: oracle.sigmoid(x, d),
                         spec="INPUT[4x5x1] -> SIGMOID"),
    "tanh": LayerCase(lambda r: nn.Tanh(), (3, 4, 5), lambda m, x, d: oracle.tanh(x, d),
                      spec="INPUT[4x5x1] -> TANH"),
    "flatten": LayerCase(lambda r: nn.Flatten(), (2, 3, 4, 5),
                         lambda m, x, d: oracle.flatten(x, d)),
    "bn1d": LayerCase(lambda r: nn.BatchNorm1d(5), (8, 5),
                      lambda m, x, d: oracle.batchnorm_train(x, _w(m), _b(m), m.running_mean,
                                                             m.running_var, m.momentum, m.eps,
                                                             d)[:2]),
    "bn2d": LayerCase(lambda r: nn.BatchNorm2d(3, eps=1e-3), (4, 3, 3, 5),
                      lambda m, x, d: oracle.batchnorm_train(x, _w(m), _b(m), m.running_mean,
                                                             m.running_var, m.momentum, m.eps,
                                                             d)[:2], spec="INPUT[3x3x5] -> BN"),
    "layernorm": LayerCase(lambda r: nn.LayerNorm(7), (5, 7),
                           lambda m, x, d: oracle.layer_norm(x, (7,), _w(m), _b(m), m.eps, d),
                           spec="INPUT[7x1x1] -> GAP -> LN"),
    "layernorm-volume-no-bias": LayerCase(
        lambda r: nn.LayerNorm((3, 4, 5), eps=1e-3, bias=False), (2, 3, 4, 5),
        lambda m, x, d: oracle.layer_norm(x, (3, 4, 5), _w(m), None, m.eps, d)),
    "layernorm-last-axis-plain": LayerCase(
        lambda r: nn.LayerNorm(6, elementwise_affine=False), (3, 2, 4, 6),
        lambda m, x, d: oracle.layer_norm(x, (6,), None, None, m.eps, d)),
    "groupnorm": LayerCase(lambda r: nn.GroupNorm(3, 6), (3, 6, 5, 4),
                           lambda m, x, d: oracle.group_norm(x, 3, _w(m), _b(m), m.eps, d),
                           spec="INPUT[6x5x4] -> GN3"),
    "groupnorm-ln": LayerCase(lambda r: nn.GroupNorm(1, 4, eps=1e-4), (2, 4, 3, 5),
                              lambda m, x, d: oracle.group_norm(x, 1, _w(m), _b(m), m.eps, d),
                              spec="INPUT[4x3x5] -> LN"),
    "instancenorm-vector-plain": LayerCase(
        lambda r: nn.GroupNorm(4, 4, affine=False), (5, 4, 7),
        lambda m, x, d: oracle.group_norm(x, 4, None, None, m.eps, d)),
    "groupnorm-no-bias": LayerCase(lambda r: nn.GroupNorm(2, 4, bias=False), (3, 4, 2, 3),
                                   lambda m, x, d: oracle.group_norm(x, 2, _w(m), None, m.eps, d)),
    "lrn": LayerCase(lambda r: nn.LocalResponseNorm(3, alpha=0.5, beta=0.75, k=2.0),
                     (2, 5, 3, 4),
                     lambda m, x, d: oracle.local_response_norm(x, 3, 0.5, 0.75, 2.0, d),
                     spec="INPUT[5x3x4] -> LRN3"),
    "dropout-eval": LayerCase(lambda r: nn.Dropout(0.3, rng=r).eval(), (3, 4, 5),
                              lambda m, x, d: oracle.dropout_eval(x, 0.3, d),
                              spec="INPUT[4x5x1] -> DROPOUT0.3"),
    "zeropad": LayerCase(lambda r: nn.ZeroPadShortcut(3, 5, stride=2), (2, 3, 5, 6),
                         lambda m, x, d: oracle.zero_pad_shortcut(x, 2, 2, d)),
}
