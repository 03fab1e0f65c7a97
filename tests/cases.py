"""Tables of hard cases (PyTorch OpInfo style): (id, x_shape, w_shape, kwargs).

Each is valid under the strict size rule unless its kwargs say strict=False.
"""

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
]
