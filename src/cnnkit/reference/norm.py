"""PLACEHOLDER: to be written."""

def batchnorm_forward(x, gamma, beta, eps=1e-5):
    raise NotImplementedError


def batchnorm_backward(dout, cache):
    raise NotImplementedError


def batchnorm_eval_forward(x, gamma, beta, running_mean, running_var, eps=1e-5):
    raise NotImplementedError


def batchnorm_eval_backward(dout, cache):
    raise NotImplementedError


def spatial_batchnorm_forward(x, gamma, beta, eps=1e-5):
    raise NotImplementedError


def spatial_batchnorm_backward(dout, cache):
    raise NotImplementedError


def spatial_batchnorm_eval_forward(x, gamma, beta, running_mean, running_var, eps=1e-5):
    raise NotImplementedError


def spatial_batchnorm_eval_backward(dout, cache):
    raise NotImplementedError


