"""PLACEHOLDER: to be written."""

def max_pool2d_forward(x, kernel, stride=None, pad=0, *, strict=True):
    raise NotImplementedError


def max_pool2d_backward(dout, cache):
    raise NotImplementedError


def avg_pool2d_forward(x, kernel, stride=None, pad=0, *, strict=True):
    raise NotImplementedError


def avg_pool2d_backward(dout, cache):
    raise NotImplementedError


def l2_pool2d_forward(x, kernel, stride=None, *, strict=True):
    raise NotImplementedError


def l2_pool2d_backward(dout, cache):
    raise NotImplementedError


def global_avg_pool2d_forward(x):
    raise NotImplementedError


def global_avg_pool2d_backward(dout, cache):
    raise NotImplementedError


