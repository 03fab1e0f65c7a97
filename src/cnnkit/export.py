"""ONNX export: a cnnkit net as an ONNX model that onnxruntime (and every other ONNX server)
runs.

    >>> from cnnkit.export import to_onnx                                 # doctest: +SKIP
    >>> to_onnx(model, (1, 28, 28), "lenet.onnx")                        # doctest: +SKIP

How it is built:

- **Each layer writes its own operators.** ``Module.to_onnx(graph, x, in_shape, name)`` lives
  with the layer's forward (:mod:`cnnkit.nn`), as its shape rule does; a container calls
  :meth:`OnnxGraph.add` on its children and joins their outputs (Residual: ``Add``; Concat:
  ``Concat`` on axis 1). This module knows no layer by name.
- **The graph is plain Python** (:class:`OnnxGraph`: nodes, initializers, names) so the layers
  need nothing but NumPy; :func:`to_onnx` turns it into an ``onnx.ModelProto`` with the ``onnx``
  package's helpers, then runs ``onnx.checker`` with full checking and strict shape inference,
  and compares the inferred output shape with the net's own shape rule.
- **The graph is the eval forward**: batch norm with its running statistics, dropout as the
  identity (``upscale_in_train``) or a multiply by 1 - p (``downscale_in_infer``). Weights are
  float32 initializers under their state-dict names (``3.weight``, ``4.0.body.1.running_var``);
  nodes are named after their layer's dotted name.
- **One input, one output**, named ``input`` and ``output`` by default, of shape
  ``(batch, *in_shape)`` and ``(batch, *out_shape)``; ``batch="dynamic"`` makes the batch axis
  a symbol (``N``) so the model takes any batch size, an int fixes it.
- **With its preprocessing** (``preprocessing=``, ``cnnkit export --include-preprocessing``)
  the input is ``images``, the stored uint8 images at the training images' size, and the output
  ``probabilities``: /255, the fit, the mean and std and a final softmax are operators of the
  graph (:mod:`cnnkit._onnx_preprocessing`), so a server sends decoded images as they are.

The ``onnx`` package is an optional extra (``pip install "cnnkit[onnx]"``); nothing else in
cnnkit imports it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from . import __version__
from ._atomic import atomic_path, atomic_write_bytes
from .budget import check_bytes
from .errors import CnnkitError
from .finite import check_net
from .nn.facts import LayerError
from .nn.module import Module

__all__ = ["ExportError", "OnnxGraph", "to_onnx", "served_metadata", "DEFAULT_OPSET", "MIN_OPSET"]

#: The ONNX opset ``to_onnx`` writes by default.
DEFAULT_OPSET = 17
#: The oldest ONNX opset ``to_onnx`` can write.
MIN_OPSET = 11          # Pad's pads and Gemm's optional bias as used here; Einsum needs 12
PROTOBUF_LIMIT = 2 ** 31 - 1 - 2 ** 24    # a ModelProto must serialise below 2 GiB
_BUG = "a bug in cnnkit's exporter or in a layer's to_onnx"
MAX_DIM = 2 ** 31 - 1                     # a size the runtimes index with 32 bits
INLINE_BYTES = 1024       # smaller initializers stay in an external-data model, as onnx's do


class ExportError(CnnkitError, ValueError):
    """The net cannot be written as ONNX (a layer without an ONNX form, placeholder weights, a
    missing package, a bad argument); one line naming the layer or the problem."""


class OnnxGraph:
    """The graph a net's layers fill while they are exported: operators and named weights, in
    plain Python and NumPy (the ``onnx`` package is needed only by :func:`to_onnx`).

    A layer's ``to_onnx`` calls :meth:`initializer` for its weights, :meth:`constant` for
    shape arguments, :meth:`node` for each operator, and :meth:`add` for a child module.
    Every name it hands out is unique in the graph; ``opset`` is the opset being written, for
    a layer whose operators need a newer one.
    """

    def __init__(self, opset: int = DEFAULT_OPSET):
        self.opset = opset
        # (op, inputs, outputs, node name, attributes), in execution order
        self.nodes: list[tuple[str, list[str], list[str], str, dict]] = []
        self.initializers: dict[str, np.ndarray] = {}
        self._names: set[str] = set()

    def fresh(self, hint: str) -> str:
        """A tensor or node name not used yet: ``hint``, else ``hint_1``, ``hint_2``, ..."""
        hint = hint or "t"
        name, k = hint, 0
        while name in self._names:
            k += 1
            name = f"{hint}_{k}"
        self._names.add(name)
        return name

    def initializer(self, name: str, array, dtype=np.float32) -> str:
        """A weight: ``array`` as a ``dtype`` initializer named ``name`` (a state-dict name)."""
        array = np.asarray(array)
        if array.dtype != dtype:
            array = array.astype(dtype)
        name = self.fresh(name)
        self.initializers[name] = np.ascontiguousarray(array)
        return name

    def constant(self, values, hint: str = "const", dtype=np.int64) -> str:
        """A small constant input (shapes, pads, axes: int64 by default)."""
        return self.initializer(hint, np.asarray(values, dtype=dtype), dtype)

    def node(self, op: str, inputs: list[str], *, name: str, **attrs) -> str:
        """Add operator ``op`` (its ONNX name) on ``inputs`` with attributes ``attrs``; returns
        its output tensor's name. ``name`` (the layer's dotted name) names the node."""
        node_name = self.fresh(name or op)      # unique among tensors too: the output's name
        self.nodes.append((op, list(inputs), [node_name], node_name, attrs))
        return node_name

    def add(self, module: Module, x: str, in_shape: tuple, name: str) -> str:
        """Export ``module`` (a layer, or a container's child) on tensor ``x``: its own
        ``to_onnx`` (:func:`to_onnx` has checked the whole net's shapes first). A layer that
        has no ONNX form raises :class:`ExportError` naming it."""
        try:
            return module.to_onnx(self, x, tuple(in_shape), name)
        except ExportError:
            raise
        except (NotImplementedError, ValueError) as err:
            raise ExportError(str(LayerError(name, module, err))) from err

    def rename_output(self, old: str, new: str) -> None:
        """Give the tensor ``old`` (a node's output) the name ``new`` (the graph's output)."""
        for op, inputs, outputs, node_name, attrs in self.nodes:
            outputs[:] = [new if o == old else o for o in outputs]
            inputs[:] = [new if i == old else i for i in inputs]
        self._names.add(new)


def _onnx():
    try:
        import onnx
    except ImportError:
        raise ExportError("ONNX export needs the onnx package: pip install \"cnnkit[onnx]\" "
                          "(or pip install onnx)") from None
    return onnx


def _check_arguments(model, input_shape, opset, batch, input_name, output_name, onnx,
                     allow_nonfinite):
    if not isinstance(model, Module):
        raise ExportError(f"to_onnx takes a cnnkit.nn.Module, got {type(model).__name__}")
    shape = tuple(input_shape) if isinstance(input_shape, (tuple, list)) else None
    if not shape or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool)
                            and 1 <= s <= MAX_DIM for s in shape):
        raise ExportError(f"input_shape must be the per-example shape, positive ints such as "
                          f"(3, 32, 32) (no batch axis), got {input_shape!r}")
    newest = onnx.defs.onnx_opset_version()
    if not isinstance(opset, (int, np.integer)) or isinstance(opset, bool) \
            or not MIN_OPSET <= opset <= newest:
        raise ExportError(f"opset must be an int from {MIN_OPSET} to {newest} (the newest this "
                          f"onnx package knows), got {opset!r}")
    if batch != "dynamic" and not (isinstance(batch, (int, np.integer))
                                   and not isinstance(batch, bool) and 1 <= batch <= MAX_DIM):
        raise ExportError(f"batch must be \"dynamic\" or an int from 1 to {MAX_DIM:,}, got "
                          f"{batch!r}")
    for what, value in (("input_name", input_name), ("output_name", output_name)):
        if not isinstance(value, str) or not value:
            raise ExportError(f"{what} must be a non-empty string, got {value!r}")
    if input_name == output_name:
        raise ExportError(f"input_name and output_name are both {input_name!r}; they must differ")
    placeholders = [n for n, p in model.named_parameters() if p.is_placeholder]
    if placeholders:
        raise ExportError(f"{placeholders[0]} has no values (the net was built with "
                          f"shapes_only()); load weights into it first")
    check_net(model, "the net", allow=allow_nonfinite)
    return tuple(int(s) for s in shape)


def to_onnx(model: Module, input_shape, path=None, *, opset: int | None = None,
            batch="dynamic", input_name: str | None = None, output_name: str | None = None,
            metadata: dict | None = None, doc: str = "", external_data: bool | None = None,
            allow_nonfinite: bool = False, preprocessing=None):
    """Write ``model``'s eval forward as an ONNX model; returns the ``onnx.ModelProto``.

    With ``preprocessing`` (a checkpoint's :class:`cnnkit.data.Preprocessing`, from
    :func:`cnnkit.inference.load_for_inference`) the graph is the whole of ``predict_images``
    after decoding: it takes uint8 images as stored, (N, h, w) grey or (N, h, w, C), at the
    training images' size, and applies /255, the fit (centre or resize), the normalisation, the
    net and a softmax, answering probabilities (N, K).

        >>> model, pre, classes, meta = load_for_inference("model.npz")  # doctest: +SKIP
        >>> to_onnx(model, pre.input_shape, "net.onnx", preprocessing=pre,
        ...         metadata=served_metadata(meta))                       # doctest: +SKIP

    Parameters
    ----------
    model : a cnnkit Module (its train/eval flag is not changed: the graph is the eval forward)
    input_shape : the per-example input shape, (C, H, W) or (D,); a shape with a batch axis in
        front, (N, C, H, W), is taken as the same when the net does not take it whole
    path : where to write the ``.onnx`` file (atomically); None writes nothing
    opset : the ONNX opset, from 11 to the newest the installed ``onnx`` knows (default 17, or
        18 for a preprocessing that resizes, whose antialiasing needs 18; the locally connected
        layer needs 12)
    batch : "dynamic" (any batch size, the axis named ``N``) or a fixed positive int
    input_name, output_name : the graph's input and output names (default "input" and
        "output"; with ``preprocessing``, "images" and "probabilities")
    metadata : extra ``metadata_props`` (str -> str, or JSON-able values, written as JSON);
        the net's config is always recorded under ``cnnkit.model``
    doc : the model's ``doc_string``
    external_data : keep the weights in a file beside ``path`` (``<name>.<id>.data``, which the
        ``.onnx`` file names; ONNX's external data), not inside it. None (the default) does so
        exactly when they exceed the 2 GiB a protobuf holds. The returned proto then holds the
        references, not the values. A rewrite of ``path`` writes a new data file and removes
        the old one only after the new ``.onnx`` is in place, so the pair on disk is always
        whole.
    allow_nonfinite : export weights or statistics that hold NaN or infinite values (a server
        would answer NaN to everything; refused by default)
    preprocessing : None (the graph takes the net's float input), or the
        :class:`~cnnkit.data.Preprocessing` to put in front of the net; its fields, with
        ``in_graph`` true and the steps left to the server, are then recorded under
        ``cnnkit.preprocessing`` (replacing a ``metadata`` entry of that name)

    Raises
    ------
    ExportError
        If a layer has no ONNX form (naming it), the shapes do not fit, a weight is a
        placeholder, an argument is bad, the weights exceed 2 GiB without a ``path`` to keep
        them beside, or the ``onnx`` package is missing; the checker's complaint if the model
        does not pass ``onnx.checker.check_model(full_check=True)`` (a bug in cnnkit, or in a
        user's layer's ``to_onnx``). With ``preprocessing``: one of another input shape than
        ``input_shape``, recorded image sizes or statistics a graph cannot hold (no pixels, NaN),
        a net whose output is not (K,) scores, or a resize below opset 18.
    NonFiniteError
        If a weight or statistic holds NaN or infinite values, without ``allow_nonfinite``.
    """
    onnx = _onnx()
    from onnx import TensorProto, helper, numpy_helper

    front = None
    if preprocessing is not None:
        # here, not at the top: it imports cnnkit.data, which `import cnnkit.export` keeps
        # out to stay cheap
        from . import _onnx_preprocessing as front
    if opset is None:
        resizes = front is not None and getattr(preprocessing, "fit", None) == "resize"
        opset = front.RESIZE_OPSET if resizes else DEFAULT_OPSET
    input_name = input_name if input_name is not None else ("images" if front else "input")
    output_name = output_name if output_name is not None else (
        "probabilities" if front else "output")
    shape = _check_arguments(model, input_shape, opset, batch, input_name, output_name, onnx,
                             allow_nonfinite)
    try:
        out_shape = tuple(model.output_shape(shape))
    except ValueError as err:
        shape, out_shape = _without_batch_axis(model, shape, err)
    if front:
        problem = front.problem(preprocessing, shape, out_shape, int(opset), MAX_DIM)
        if problem:
            raise ExportError(problem)
    weight_bytes = sum(p.size for p in model.parameters()) * 4
    if external_data is None:
        external_data = weight_bytes > PROTOBUF_LIMIT
    if external_data and path is None:
        raise ExportError(f"the net's weights take {weight_bytes / 2**30:.1f} GiB in float32, "
                          f"more than an ONNX protobuf holds; give a path, to keep them in a "
                          f"file beside it (external data)" if weight_bytes > PROTOBUF_LIMIT
                          else "external_data=True keeps the weights beside the file: give a "
                          "path")
    # the weights as float32 initializers, and their protobuf copies and serialised bytes
    # unless they go to a file of their own
    check_bytes((1 if external_data else 3) * weight_bytes,
                f"exporting {weight_bytes / 2**20:.0f} MiB of weights to ONNX")

    graph = OnnxGraph(int(opset))
    graph.fresh(input_name)
    x = front.add_front(graph, preprocessing, input_name) if front else input_name
    out = graph.add(model, x, shape, "")
    if front:
        out = front.add_back(graph, out)
    if out == input_name or out in graph.initializers:
        out = graph.node("Identity", [out], name="output")
    graph.rename_output(out, output_name)

    batch_dim = "N" if batch == "dynamic" else int(batch)
    in_type, in_dims = TensorProto.FLOAT, list(shape)
    if front:
        in_type, in_dims = TensorProto.UINT8, front.input_dims(preprocessing)
    nodes = [helper.make_node(op, inputs, outputs, name=name, **attrs)
             for op, inputs, outputs, name, attrs in graph.nodes]
    onnx_graph = helper.make_graph(
        nodes, type(model).__name__.lower(),
        [helper.make_tensor_value_info(input_name, in_type, [batch_dim, *in_dims])],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, [batch_dim, *out_shape])])
    proto = helper.make_model(onnx_graph, producer_name="cnnkit", producer_version=__version__,
                              opset_imports=[helper.make_opsetid("", int(opset))],
                              doc_string=doc)
    # the IR version this opset was released with, so older runtimes accept the file
    proto.ir_version = min(proto.ir_version, _ir_version_for(onnx, int(opset)))
    props = {"cnnkit.model": json.dumps(model.config()),
             "cnnkit.input_shape": json.dumps(list(shape))}
    for key, value in (metadata or {}).items():
        props[str(key)] = value if isinstance(value, str) else json.dumps(value)
    if front:
        props["cnnkit.preprocessing"] = json.dumps(
            front.graph_metadata(preprocessing, input_name, output_name))
    helper.set_model_props(proto, props)
    _check_output_shape(onnx, proto, graph, output_name, [batch_dim, *out_shape])
    if external_data:
        _write_external(onnx, proto, graph, Path(path))
        return proto
    proto.graph.initializer.extend(numpy_helper.from_array(array, name)
                                   for name, array in graph.initializers.items())
    data = proto.SerializeToString()          # once: the checker reads these bytes too
    _validate(onnx, data)
    if path is not None:
        atomic_write_bytes(path, lambda f: f.write(data))
    return proto


def _write_external(onnx, proto, graph: OnnxGraph, path: Path) -> None:
    """The weights to ``<name>.<id>.data`` beside ``path`` (each initializer's bytes at an
    offset the proto records; those under 1 KiB, such as shape arguments, stay inline), the
    proto to ``path``, each atomically and checked by onnx.checker from the files before the
    ``.onnx`` takes its name; then the data files of earlier writes of ``path`` are removed."""
    import uuid

    from onnx import TensorProto, helper, numpy_helper

    data_name = f"{path.name}.{uuid.uuid4().hex[:12]}.data"
    with atomic_path(path.parent / data_name) as tmp, open(tmp, "wb") as f:
        for name, array in graph.initializers.items():
            if array.nbytes < INLINE_BYTES:     # shape arguments: shape inference reads them
                proto.graph.initializer.append(numpy_helper.from_array(array, name))
                continue
            offset = -f.tell() % 64 + f.tell()            # 64-byte aligned, for mapping
            f.seek(offset)
            f.write(np.ascontiguousarray(array, array.dtype.newbyteorder("<")).tobytes())
            tensor = TensorProto(name=name, dims=list(array.shape),
                                 data_type=helper.np_dtype_to_tensor_dtype(array.dtype))
            for key, value in (("location", data_name), ("offset", offset),
                               ("length", array.nbytes)):
                tensor.external_data.add(key=key, value=str(value))
            tensor.data_location = TensorProto.EXTERNAL
            proto.graph.initializer.append(tensor)
    try:
        with atomic_path(path) as tmp:
            tmp.write_bytes(proto.SerializeToString())
            _validate(onnx, str(tmp))
    except BaseException:
        (path.parent / data_name).unlink(missing_ok=True)
        raise
    earlier = re.compile(re.escape(path.name) + r"\.[0-9a-f]{12}\.data")
    for old in path.parent.iterdir():
        if earlier.fullmatch(old.name) and old.name != data_name:
            old.unlink(missing_ok=True)


def _without_batch_axis(model: Module, shape: tuple, err: ValueError) -> tuple:
    """(shape[1:], its output shape) when the net takes ``shape`` less a leading batch axis
    (PyTorch's exporter is given an example batch); else ``err``, the whole shape's error."""
    if len(shape) >= 2:
        try:
            return shape[1:], tuple(model.output_shape(shape[1:]))
        except ValueError:
            pass
    raise ExportError(str(err)) from err


def _ir_version_for(onnx, opset: int) -> int:
    """The IR version of the release that introduced ``opset`` (onnx's own table)."""
    # VERSION_TABLE rows: (release, IR version, ai.onnx opset, ai.onnx.ml opset[, ...])
    versions = [row[1] for row in onnx.helper.VERSION_TABLE if row[2] == opset]
    return min(versions) if versions else onnx.IR_VERSION


def _validate(onnx, data) -> None:
    """onnx.checker with full checking (strict shape inference) on the serialised model (or
    its file, whose external data the checker reads beside it)."""
    try:
        onnx.checker.check_model(data, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as err:
        raise ExportError(f"the exported model does not pass onnx.checker ({_BUG}): "
                          f"{_first_line(err)}") from err


def _first_line(err) -> str:
    return (str(err).strip().splitlines() or ["?"])[0]


def _check_output_shape(onnx, proto, graph: OnnxGraph, output_name: str, expected: list):
    """The output shape ONNX's strict shape inference gives against the net's own shape rule.
    Run before the weights are added, on a copy that declares them as inputs (their shapes
    without their values), so hundreds of MB are not copied for it."""
    from onnx import helper

    light = onnx.ModelProto()
    light.CopyFrom(proto)
    light.graph.input.extend(
        helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(array.dtype),
                                      list(array.shape))
        for name, array in graph.initializers.items())
    try:
        inferred = onnx.shape_inference.infer_shapes(light, strict_mode=True)
    except onnx.shape_inference.InferenceError as err:
        raise ExportError(f"ONNX shape inference fails on the exported model ({_BUG}): "
                          f"{_first_line(err)}") from err
    dims = []
    for value in inferred.graph.output:
        if value.name == output_name:
            dims = [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]
    if dims != expected:
        raise ExportError(f"ONNX shape inference gives the output {dims}, the net's shape rule "
                          f"{expected} ({_BUG})")


def served_metadata(metadata: dict) -> dict:
    """What an exported file records of a checkpoint's metadata, for whoever serves it: the
    class names and the preprocessing (the mean and std to normalise with, the image size).
    :func:`to_onnx` with ``preprocessing`` adds ``in_graph`` and the server's remaining steps
    to ``cnnkit.preprocessing``."""
    kept = {}
    if metadata.get("classes"):
        kept["cnnkit.classes"] = metadata["classes"]
    fields = ("image_shape", "input_shape", "mean", "std", "fit", "brightness")
    if all(k in metadata for k in ("mean", "std", "input_shape")):
        kept["cnnkit.preprocessing"] = {k: metadata[k] for k in fields if k in metadata}
    return kept
