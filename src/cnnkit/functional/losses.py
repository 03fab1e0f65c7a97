"""PLACEHOLDER: to be written."""

def softmax_loss(scores, y):
    raise NotImplementedError


def svm_loss(scores, y, margin=1.0):
    raise NotImplementedError


def l2_regularization(weights, reg):
    raise NotImplementedError


