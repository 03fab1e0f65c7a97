"""What a layer says about itself without running: the facts that summary, the spec grammar,
FC -> conv conversion and the per-layer timer read, each answered by the layer's own class.

Every Module answers, from its configuration and the per-example shape of an input (no batch
axis: (C, H, W) or (D,)), without touching its weights:

    output_shape(in_shape)      the per-example output shape; ValueError with the numbers when
                                the input does not fit (a size rule's is the kernel's own)
    cost(in_shape)              Cost(macs, flops) of one example, or None when unknown
    label(in_shape)             the notes' name, written by :mod:`cnnkit.notation` as the spec
                                token that builds the layer again: CONV3-64, POOL2, FC-10,
                                RELU, RES-64/s2 ...
    weight_formula(in_shape)    its weights written out as the notes do: (3*3*64)*128
    im2col_shape(in_shape)      (K, L) of the column matrix it multiplies, or None
    output_stride(in_shape)     how far apart, in input pixels, its output positions are
    training_effect()           what training mode changes in its output ("batch statistics",
                                "random masks"), or None
    to_onnx(graph, x, in_shape, name)
                                the ONNX operators of its eval forward, added to an
                                :class:`cnnkit.export.OnnxGraph`; the output tensor's name
    in_place                    it adds no volume of its own (ReLU, Dropout, a Flatten view)
    position_wise               it applies unchanged to any rank, value by value or position by
                                position (activations, dropout): a map of scores as well as a
                                vector

The parameter count is ``num_parameters()``: the shapes the constructor gave its Parameters,
which :func:`cnnkit.nn.shapes_only` builds without drawing a value. Containers compose their
children's answers; ``walk_shapes`` yields a :class:`Step` per layer in execution order, so a
table of a whole net is one loop over it.

A module that does not answer (a user's custom layer) gets the defaults below: its output
shape comes from one forward pass on zeros, the one place where anything is run, and its cost
is unknown. A subclass that overrides ``forward`` without answering ``output_shape`` itself is
treated the same way (the facts it inherits describe another forward); see
``Module.__init_subclass__``.
"""

from __future__ import annotations

from typing import Iterator, NamedTuple

import numpy as np

from ..checks import pair
from ..errors import CnnkitError

__all__ = ["Cost", "Step", "LayerError", "LayerFacts", "FACTS", "brief", "join_name",
           "last_out"]


class Cost(NamedTuple):
    """The arithmetic of one example's forward pass: multiply-accumulates and floating-point
    operations. A multiply-accumulate is 2 FLOPs (papers' "FLOPs" are often MACs)."""

    macs: int
    flops: int


class Step(NamedTuple):
    """One entry of ``walk_shapes``: a layer, its dotted name and its per-example shapes.

    ``whole`` is True when the step stands for the module and everything inside it (a layer, or
    a module of unknown type); False for a container's own operation (Residual's sum, Concat's
    stack), whose children have steps of their own before it.
    """

    name: str
    module: object
    in_shape: tuple
    out_shape: tuple
    whole: bool = True


def brief(module) -> str:
    """A one-line description for messages: ``Conv2d(3, 4, kernel_size=(3, 3))``, and
    ``Sequential(...)`` for a module with children (its full repr spans many lines)."""
    inner = "..." if module.children() else module.extra_repr()
    return f"{type(module).__name__}({inner})"


def join_name(prefix: str, name: str) -> str:
    """A child's dotted name: ``join_name("3.body", "0") == "3.body.0"``."""
    return f"{prefix}.{name}" if prefix else name


class LayerError(CnnkitError, ValueError):
    """A layer of a walked tree does not fit the shape it gets. The message names it,
    ``layer 3.body.0 Conv2d(...): <the layer's own message>``; ``reason`` is the layer's own
    exception (a :class:`~cnnkit.geometry.SizeRuleError`, say)."""

    def __init__(self, name: str, module, reason: Exception | str):
        where = f"layer {name} {brief(module)}" if name else brief(module)
        super().__init__(f"{where}: {reason}")
        self.name, self.module = name, module
        self.reason = reason if isinstance(reason, Exception) else ValueError(reason)


class LayerFacts:
    """The facts' defaults, for a module that does not answer them (Module inherits these)."""

    in_place = False
    position_wise = False

    def output_shape(self, in_shape: tuple) -> tuple:
        """The per-example output shape for a per-example ``in_shape``.

        This default runs one forward pass on zeros of shape (1, *in_shape), in the module's
        parameter dtype (float32 when it has none), in eval mode and without hooks, then puts
        back every flag and cache it touched.
        """
        params = self.parameters()
        dtype = params[0].dtype if params else np.float32
        with self._set_aside():
            out = self.eval().forward(np.zeros((1, *in_shape), dtype))
        return tuple(int(s) for s in np.shape(out)[1:])

    def cost(self, in_shape: tuple) -> Cost | None:
        """MACs and FLOPs of one example; None when the module does not say (unknown type).
        A container answers for its own operation (Residual: the sum), not its children's."""
        return None

    def label(self, in_shape: tuple) -> str:
        """The layer's name in the notes' notation (CONV3-64, POOL2); the class name when it
        has none."""
        return type(self).__name__

    def weight_formula(self, in_shape: tuple) -> str:
        """Its weight count written out, as the notes' table does ("" when none is written).
        A Linear given the volume its vector was flattened from writes it H*W*C*F."""
        return ""

    def im2col_shape(self, in_shape: tuple) -> tuple | None:
        """(K, L) of the column matrix the layer multiplies per example (conv, locally
        connected): K = C/groups*KH*KW values per window, L = H_out*W_out windows; else None."""
        return None

    def output_stride(self, in_shape: tuple) -> tuple | None:
        """(sh, sw): adjacent output positions are sh, sw input pixels apart. This default takes
        a ``stride`` attribute (an int or a pair) at its word; without one it says (1, 1) when
        the layer keeps H x W, and None (unknown) when it changes them."""
        stride = getattr(self, "stride", None)
        if stride is not None:
            return pair(stride, f"{type(self).__name__} stride")
        out = self.output_shape(in_shape)
        if len(in_shape) == 3 and len(out) == 3 and tuple(in_shape[1:]) == tuple(out[1:]):
            return (1, 1)
        return None

    def training_effect(self) -> str | None:
        """What training mode changes in the output, as a few words ("batch statistics",
        "random masks"); None when training and eval compute the same."""
        return None

    def walk_shapes(self, in_shape: tuple, prefix: str = "") -> Iterator[Step]:
        """A :class:`Step` for every layer, in execution order, from a per-example
        ``in_shape``; nothing is computed. A layer is one step; containers yield their
        children's steps (and then their own operation's). ``prefix`` is this module's dotted
        name in a larger net.

        Raises :class:`LayerError` naming the first layer that does not fit its input.
        """
        in_shape = tuple(in_shape)
        try:
            out = tuple(self.output_shape(in_shape))
        except LayerError:
            raise
        except ValueError as err:
            raise LayerError(prefix, self, err) from err
        yield Step(prefix, self, in_shape, out)

    def to_onnx(self, graph, x: str, in_shape: tuple, name: str) -> str:
        """Add the ONNX operators of this layer's eval forward to ``graph`` (a
        :class:`cnnkit.export.OnnxGraph`), reading the tensor named ``x`` of per-example shape
        ``in_shape``, and return the name of the output tensor. ``name`` is the layer's dotted
        name: its weights become initializers under their state-dict names (``3.weight``).

        This default refuses: a module of unknown type has no ONNX form.
        """
        raise NotImplementedError(f"{type(self).__name__} has no ONNX form (a layer of a type "
                                  f"cnnkit's exporter does not know; give its class a to_onnx "
                                  f"method)")

    def named_chain(self, prefix: str = "") -> Iterator[tuple[str, object]]:
        """``(dotted name, layer)`` of the layers this module runs one after another: a
        Sequential's layers with nested Sequentials expanded; any other module is one layer."""
        yield prefix, self


# The answers a class gives about its own forward; Module.__init_subclass__ drops the inherited
# ones of a class that overrides forward() without answering output_shape() itself.
FACTS = ("output_shape", "cost", "label", "weight_formula", "im2col_shape", "output_stride",
         "training_effect", "walk_shapes", "named_chain", "to_onnx", "in_place", "position_wise")


def last_out(steps, in_shape: tuple) -> tuple:
    """The output shape at the end of a walk (``in_shape`` for an empty one)."""
    out = tuple(in_shape)
    for step in steps:
        out = step.out_shape
    return out
