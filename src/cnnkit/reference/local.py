"""PLACEHOLDER: to be written."""

def locally_connected2d_forward(x, w, b=None, stride=1, pad=0, dilation=1, *, strict=True):
    raise NotImplementedError


def locally_connected2d_backward(dout, cache):
    raise NotImplementedError


