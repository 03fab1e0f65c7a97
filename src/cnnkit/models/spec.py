"""The notes' layer-pattern notation: parse a spec and build the network it names.

    INPUT[3x32x32] -> [[CONV3-32 -> BN -> RELU]*2 -> POOL2]*3 -> [FC-256 -> RELU -> DROPOUT0.5]*2
                   -> FC-10

Grammar (case-insensitive; whitespace is free between items, a layer token is written without any):

    spec   := [INPUT '->'] chain
    chain  := item ('->' item)*                     ('→' is accepted for '->')
    item   := LAYER | '[' chain ']' ['*' N]         (N >= 0; '*0' drops the group, no '*' = once)
    INPUT  := 'INPUT[' C 'x' H 'x' W ']'

Layers (``LAYERS`` lists the forms). Volumes are written CxHxW throughout (the notes write HxWxC):

    CONVk-n[/sSpPdDgG][/init]
                      Conv2d k x k, n filters, stride S (1), dilation D (1), padding P (default
                      D*(k-1)/2, which keeps H and W at stride 1; a window with an even span needs
                      an explicit P), G groups (1). No bias when a BN follows: BN's beta is the
                      bias. The options and the initialisation are two segments, in either order
                      (CONV3-64/s2p1/he, CONV3-64/he/s2p1), each once.
    LCk-n[/sSpPdD][/init]
                      LocallyConnected2d, the same options but groups, and the same default padding
    POOLk[/S][pP]     max pooling, window k, stride S (default k), padding P (0); AVGPOOL likewise,
                      L2POOL too but without padding
    FC-n[/init]       Linear to n outputs; a Flatten goes in first when the input is a volume
    RELU SIGMOID TANH the activations; BN: BatchNorm2d on a volume, BatchNorm1d on a vector
    PRELU             PReLU with a learned slope per channel (or per feature of a vector)
    DROPOUT[p][/mode] Dropout, p in [0, 1) the probability to drop (default 0.5); mode train
                      (upscale_in_train, the default: "inverted" dropout, the kept units scaled by
                      1/(1-p) in training) or infer (downscale_in_infer, the original dropout: no
                      scaling in training, the output times 1-p at inference); DROPOUT/infer has
                      p 0.5
    RES-n[/sS]        a ResNet basic block to n channels with stride S
                      (:func:`cnnkit.models.blocks.basic_block`)
    GAP               GlobalAvgPool2d and a Flatten: the volume becomes a vector of C
    LRN[n]            LocalResponseNorm(n), n = 5 by default, PyTorch's alpha, beta and k
    LN                layer norm: LayerNorm(D) on a vector; on a volume GroupNorm(1, C), the Group
                      Norm paper's LN: each example normalised over all of C x H x W, then a scale
                      and shift per channel
    GNg               GroupNorm(g, C): each example's C channels in g groups of C/g, each group
                      normalised over its channels and H x W, then a scale and shift per channel;
                      GroupNorm(g, D) on a vector. g must divide C. GN1 is LN, and is written LN

An initialisation (init) chooses how a CONV, LC or FC draws its weights (``init`` of the layer):
he (He normal), he_uniform, xavier (Glorot normal), xavier_uniform, or wS, Gaussian weights
S * randn with S > 0 written as a decimal (w0.01). Without one, a CONV, an LC and a hidden FC get
He, and the last FC (the classifier) w0.01, as in :func:`cnnkit.models.zoo.lenet_bn`; an
initialisation that is written is kept, even where it is the default.

k, S, P and D may differ between the axes, written HxW, height first (CONV3x1-64/p1x0). The
canonical text of a token (:func:`describe`) is what :mod:`cnnkit.notation` writes, which is
also the label of the layer it builds (``Module.label``), less its initialisation.

Every error is a ``SpecError`` whose first line names the token, where it is (the layer number in
the expanded chain and the volume entering it, or the character) and why; the spec follows on the
next line with ``^^^`` under the token.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass
from typing import Callable, NamedTuple

import numpy as np

from .. import nn, notation
from ..errors import CnnkitError
from ..geometry import SizeRuleError, VolumeError, check_volume
from ..nn.layers import INITS
from .blocks import basic_block

__all__ = ["SpecError", "Layer", "Repeat", "Spec", "Step", "LAYERS", "parse", "build", "trace",
           "describe", "is_spec"]

_SIZE = r"\d+(?:X\d+)?"                                 # k, or HxW when the axes differ
_WINDOW = rf"({_SIZE})-(\d+)(/.*)?"                    # the '/'-segments read by _segments
_DECIMAL = r"\d*\.?\d+|\d+\."                             # 0.5, .5, 5, 5.
_POOL = rf"({_SIZE})(?:/S?({_SIZE}))?"                 # + (?:P({_SIZE}))? where padded
_WORD = re.compile(r"[A-Za-z0-9_.\-/]")
_STAR = re.compile(r"\*\s*(-?\d*)")
MAX_LAYERS = 10_000                                       # in the expanded chain
MAX_NESTING = 50                                          # [ inside [ inside ...
MAX_SIZE = 2 ** 31 - 1                                    # any number in a token or INPUT


class SpecError(CnnkitError, ValueError):
    """A spec that does not parse or does not build. ``str(err)`` is three lines: what and why, the
    spec, and a caret line under the offending token. ``err.span`` is the token's (start, end) in
    ``err.text``; ``err.reason`` the why alone."""

    text: str = ""
    span: tuple = (0, 0)
    reason: str = ""

    @classmethod
    def at(cls, text: str, span: tuple, where: str, reason: str) -> "SpecError":
        """The error for ``reason`` at ``span`` of ``text``: the message echoes the spec
        with carets under the offending token."""
        start, end = span
        token = text[start:end]
        head = "spec: " + (f"{token} {where}".strip() + ": " if token or where else "") + reason
        echo = "".join(" " if ch.isspace() else ch for ch in text)     # keeps the columns
        err = cls(f"{head}\n  {echo}\n  {' ' * start}{'^' * max(1, end - start)}")
        err.text, err.span, err.reason = text, span, reason
        return err


# ----------------------------------------------------------------------------- the syntax tree

@dataclass(frozen=True)
class Layer:
    """One layer token: ``kind`` is a key of ``LAYERS``; ``args`` its numbers with the defaults
    that do not depend on other numbers filled in (``padding`` stays None when not written);
    ``span`` the token's (start, end) in the spec text."""

    kind: str
    args: dict
    span: tuple


@dataclass(frozen=True)
class Repeat:
    """``[body]*count``; ``span`` runs from ``[`` to the end of ``*N`` (or to ``]``)."""

    body: tuple
    count: int
    span: tuple


@dataclass(frozen=True)
class Spec:
    """A parsed spec: its text, the INPUT volume (C, H, W) and INPUT's span (None when absent),
    and the top-level nodes (``Layer`` and ``Repeat``)."""

    text: str
    input_shape: tuple | None
    input_span: tuple | None
    nodes: tuple


class Step(NamedTuple):
    """A layer of the expanded chain: its number (from 1), token as written, and the volume
    (C, H, W) or vector (D,) entering and leaving it."""

    index: int
    token: str
    input: tuple
    output: tuple


# ----------------------------------------------------------------------------- lexing and parsing

def _lex(text: str) -> list[tuple[str, int, int]]:
    """Tokens (kind, start, end): "->", "[", "]", "*" (with its count), or "word"."""
    tokens, i, n = [], 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
        elif text.startswith("->", i) or ch == "→":
            end = i + (1 if ch == "→" else 2)
            tokens.append(("->", i, end))
            i = end
        elif ch in "[]":
            tokens.append((ch, i, i + 1))
            i += 1
        elif ch == "*":
            m = _STAR.match(text, i)
            if not m.group(1) or m.group(1).startswith("-"):
                raise SpecError.at(text, m.span(), f"at character {i + 1}", "'*' must be "
                                   "followed by a repeat count N >= 0, as in [CONV3-32 -> RELU]*2")
            tokens.append(("*", i, m.end()))
            i = m.end()
        elif _WORD.match(ch):
            j = i
            while j < n and _WORD.match(text[j]) and not text.startswith("->", j):
                j += 1
            tokens.append(("word", i, j))
            i = j
        else:
            raise SpecError.at(text, (i, i + 1), f"at character {i + 1}",
                               f"unexpected character {ch!r}; layers are joined by '->' and "
                               f"grouped by [ ... ]*N")
    return tokens


def _known_name(word: str) -> str | None:
    """The layer name a token (upper case) starts with, if the rest can be its numbers."""
    for name in _BY_LENGTH:
        if word.startswith(name) and (len(word) == len(name) or word[len(name)] in "0123456789-/."):
            return name
    return None


def _decode(text: str, span: tuple) -> Layer:
    word = text[span[0]:span[1]].upper()
    where = f"at character {span[0] + 1}"
    name = _known_name(word)
    if name is None:
        stem = re.match(r"[A-Z_]*(?:\d+[A-Z_]+)*", word).group() or word
        close = difflib.get_close_matches(stem, LAYERS, n=1, cutoff=0.5)
        hint = f"did you mean {close[0]}? " if close else ""
        raise SpecError.at(text, span, where, f"unknown layer {stem}; {hint}known layers: "
                           f"{', '.join(LAYERS.values())}")
    token = TOKENS[name]
    m = re.fullmatch(token.pattern, word[len(name):])
    try:
        args = None if m is None else token.read(*m.groups())
    except _Unreadable as err:
        raise SpecError.at(text, span, where, f"not a valid {name} token: {err}") from None
    if args is None:
        example = f", e.g. {token.example}" if token.example else ""
        segments = word[len(name):].split("/")[1:]
        if name not in _INITIALISED and any(_is_init(seg) for seg in segments):
            raise SpecError.at(text, span, where, f"{name} takes no initialisation (only "
                               f"{', '.join(_INITIALISED[:-1])} and {_INITIALISED[-1]} have "
                               f"weights to draw); the form is {token.form}{example}")
        raise SpecError.at(text, span, where, f"not a valid {name} token; the form is "
                           f"{token.form}{example}")
    too_big = [a for a in _numbers(args) if a > MAX_SIZE]
    if too_big:
        raise SpecError.at(text, span, where, f"{too_big[0]:,} is larger than any layer can be "
                           f"(sizes go up to {MAX_SIZE:,})")
    return Layer(name, args, span)


def _numbers(args):
    """The ints among a token's read arguments (nested tuples and dicts included)."""
    values = args.values() if isinstance(args, dict) else args if isinstance(
        args, (tuple, list)) else [args]
    for value in values:
        if isinstance(value, (tuple, list, dict)):
            yield from _numbers(value)
        elif isinstance(value, int) and not isinstance(value, bool):
            yield value


def parse(text: str) -> Spec:
    """Parse a spec into a :class:`Spec` (nodes are :class:`Layer` and :class:`Repeat`).

    Raises
    ------
    SpecError
        For a syntax error: an unknown layer name (with the closest known one), a malformed
        token, a misplaced or missing '->', an unbalanced bracket, a '*' without a count, an
        INPUT that is not first or not CxHxW.
    TypeError
        If ``text`` is not a string.

    Examples
    --------
    >>> spec = parse("INPUT[3x32x32] -> [CONV3-16 -> RELU]*2 -> FC-10")
    >>> spec.input_shape, [type(node).__name__ for node in spec.nodes], spec.nodes[1].span
    ((3, 32, 32), ['Repeat', 'Layer'], (42, 47))
    """
    if not isinstance(text, str):
        raise TypeError(f"a spec must be a string, got {type(text).__name__}")
    tokens = _lex(text)
    input_shape = input_span = None
    pos = 0
    if tokens and tokens[0][0] == "word" and text[tokens[0][1]:tokens[0][2]].upper() == "INPUT":
        input_shape, input_span, pos = _parse_input(text, tokens)
        if pos == len(tokens):
            raise SpecError.at(text, input_span, "", "the spec has no layers after INPUT")
        if tokens[pos][0] != "->":
            raise SpecError.at(text, tokens[pos][1:], f"at character {tokens[pos][1] + 1}",
                               "expected '->' after INPUT[...]")
        pos += 1
    nodes, pos = _parse_chain(text, tokens, pos, None)
    return Spec(text, input_shape, input_span, tuple(nodes))


def _parse_input(text, tokens):
    start = tokens[0][1]
    if len(tokens) < 4 or tokens[1][0] != "[" or tokens[2][0] != "word" or tokens[3][0] != "]":
        end = tokens[0][2]
        raise SpecError.at(text, (start, end), "", "INPUT needs its volume as INPUT[CxHxW], "
                           "e.g. INPUT[3x32x32]")
    span = (start, tokens[3][2])
    dims = text[tokens[2][1]:tokens[2][2]].lower().split("x")
    if len(dims) != 3 or not all(d.isdigit() for d in dims):
        raise SpecError.at(text, span, "", f"INPUT takes the volume as CxHxW in integers "
                           f"(e.g. INPUT[3x32x32]), got {text[tokens[2][1]:tokens[2][2]]!r}")
    if any(int(d) > MAX_SIZE for d in dims):
        raise SpecError.at(text, span, "", f"INPUT sizes go up to {MAX_SIZE:,}, got "
                           f"{text[tokens[2][1]:tokens[2][2]]}")
    return tuple(int(d) for d in dims), span, 4


def _parse_chain(text, tokens, pos, opener, depth=0):
    """Items joined by '->' up to the end (opener None) or the ']' that closes ``opener``."""
    def fail(token, reason):
        raise SpecError.at(text, token[1:], f"at character {token[1] + 1}", reason)

    nodes = []
    while True:
        if pos == len(tokens) or tokens[pos][0] == "]":      # an item is due but none comes
            if nodes:
                fail(tokens[pos - 1], "'->' with no layer after it")
            if opener is not None:
                if pos == len(tokens):
                    fail(opener, "this '[' is never closed by a ']'")
                raise SpecError.at(text, (opener[1], tokens[pos][2]), "", "an empty [ ] group")
            if pos < len(tokens):
                fail(tokens[pos], "this ']' has no matching '['")
            raise SpecError.at(text, (0, 0), "", "the spec has no layers")
        kind, start, end = tokens[pos]
        if kind == "->":
            fail(tokens[pos], "'->' with no layer before it")
        if kind == "*":
            fail(tokens[pos], "'*N' repeats a bracketed group; write [FC-10 -> RELU]*2")
        if kind == "word":
            if text[start:end].upper() == "INPUT":
                fail(tokens[pos], "INPUT can only come first")
            nodes.append(_decode(text, (start, end)))
            pos += 1
        else:                                                # "["
            if depth >= MAX_NESTING:
                fail(tokens[pos], f"brackets nested more than {MAX_NESTING} deep")
            body, pos = _parse_chain(text, tokens, pos + 1, tokens[pos], depth + 1)
            close, count = tokens[pos][2], 1                 # tokens[pos] is its "]"
            pos += 1
            if pos < len(tokens) and tokens[pos][0] == "*":
                count = int(_STAR.match(text, tokens[pos][1]).group(1))
                close = tokens[pos][2]
                pos += 1
            nodes.append(Repeat(tuple(body), count, (start, close)))
        if pos == len(tokens):
            if opener is not None:
                fail(opener, "this '[' is never closed by a ']'")
            return nodes, pos
        if tokens[pos][0] == "]":
            if opener is None:
                fail(tokens[pos], "this ']' has no matching '['")
            return nodes, pos
        if tokens[pos][0] == "*" and kind == "word":
            fail(tokens[pos], f"'*N' repeats a bracketed group; write [{text[start:end]}]"
                              f"{text[tokens[pos][1]:tokens[pos][2]]}")
        if tokens[pos][0] != "->":
            prev = text[start:end] if kind == "word" else "]"
            fail(tokens[pos], f"expected '->' between {prev} and "
                              f"{text[tokens[pos][1]:tokens[pos][2]]}")
        pos += 1


# ----------------------------------------------------------------------------- canonical text

def describe(text_or_spec) -> str:
    """The spec in canonical form: layer names in upper case and their options in lower
    case, as the notes and the issue write them, `` -> `` between items, defaults left out
    (``CONV3-64/s1p1`` is ``CONV3-64``, ``DROPOUT/train`` is ``DROPOUT0.5``, ``GN1`` is ``LN``,
    ``[X]*1`` is ``[X]``), the options before the initialisation, which is kept as written even
    where it is the default (``CONV3-64/he/s2`` is ``CONV3-64/s2/he``).

    >>> describe("input[3x32x32]→conv3-16/P1S2 -> [fc-10]*1")
    'INPUT[3x32x32] -> CONV3-16/s2 -> [FC-10]'
    """
    spec = text_or_spec if isinstance(text_or_spec, Spec) else parse(text_or_spec)
    head = []
    if spec.input_shape is not None:
        head = [f"INPUT[{'x'.join(map(str, spec.input_shape))}]"]
    return " -> ".join(head + [_canonical(node) for node in spec.nodes])


def _canonical(node) -> str:
    """A node's text; a layer's is written by :mod:`cnnkit.notation`, as its label is."""
    if isinstance(node, Repeat):
        inner = " -> ".join(_canonical(n) for n in node.body)
        return f"[{inner}]" + ("" if node.count == 1 else f"*{node.count}")
    write = TOKENS[node.kind].write
    return node.kind if write is None else write(node.args)


def is_spec(text) -> bool:
    """Whether ``text`` reads as a spec rather than a model name: it has '->' (or '→') or '[',
    or it is one token that starts with a layer name (``FC-10``, ``CONV3-8``, ``RELU``)."""
    if not isinstance(text, str):
        return False
    s = text.strip()
    if "->" in s or "→" in s or "[" in s:
        return True
    return bool(s) and not any(ch.isspace() for ch in s) and _known_name(s.upper()) is not None


# ----------------------------------------------------------------------------- building

def _expand(nodes, path=()):
    """(layer, path) for every layer of the chain with its repeats unrolled; path holds
    (repetition, count) pairs, outermost first."""
    for node in nodes:
        if isinstance(node, Layer):
            yield node, path
        elif _count(node.body):     # [..]*N of an empty body is empty, however large N is
            for r in range(node.count):
                yield from _expand(node.body, path + ((r + 1, node.count),))


def _shape_text(shape) -> str:
    return "x".join(map(str, shape)) if len(shape) == 3 else f"a vector of {shape[0]}"


def _check_input_shape(shape, what):
    shape = tuple(shape)
    if len(shape) != 3 or not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool)
                                  for d in shape):
        raise ValueError(f"{what} must be a volume (C, H, W) of ints, got {shape!r}")
    return tuple(int(d) for d in shape)


def _start_shape(spec: Spec, input_shape):
    """The volume entering the first layer, from INPUT and/or ``input_shape``."""
    first = next((layer.span for layer, _ in _expand(spec.nodes)), (0, len(spec.text)))
    if input_shape is not None:
        input_shape = _check_input_shape(input_shape, "input_shape")
    if spec.input_shape is None and input_shape is None:
        raise SpecError.at(spec.text, first, "at layer 1", "no input volume: start the spec "
                           "with INPUT[CxHxW] or pass input_shape")
    if spec.input_shape is not None and input_shape not in (None, spec.input_shape):
        raise SpecError.at(spec.text, spec.input_span, "", f"the spec's input "
                           f"{_shape_text(spec.input_shape)} (CxHxW) disagrees with input_shape "
                           f"{_shape_text(input_shape)}; give one or make them agree")
    shape = spec.input_shape or input_shape
    if min(shape) < 1:
        raise SpecError.at(spec.text, spec.input_span or first, "", f"every size of the input "
                           f"must be >= 1, got {_shape_text(shape)}")
    return shape


def _count(nodes) -> int:
    """How many layers the nodes expand to, without expanding them."""
    return sum(1 if isinstance(n, Layer) else n.count * _count(n.body) for n in nodes)


def _plan(spec: Spec, input_shape):
    """[(Step, make)] with make(rng) -> the layer's modules; raises SpecError at the first
    layer that cannot apply. Each layer's modules are built without weights
    (``nn.shapes_only``) and asked for their output shape: the size rules are the layers' own."""
    total = _count(spec.nodes)
    if total > MAX_LAYERS:                  # a typo such as *1000 would otherwise seem to hang
        node = max(spec.nodes, key=lambda n: _count((n,)))
        raise SpecError.at(spec.text, node.span, "", f"the spec expands to {total:,} layers, more "
                           f"than the {MAX_LAYERS:,} a spec may have; check the repeat counts")
    shape = _start_shape(spec, input_shape)
    flat = list(_expand(spec.nodes))
    last_fc = max((i for i, (layer, _) in enumerate(flat) if layer.kind == "FC"), default=None)
    origin = ""                                   # the layer that made the volume a vector
    plan, scratch = [], np.random.default_rng(0)  # scratch: draws nothing that is kept
    for i, (layer, path) in enumerate(flat):
        token = spec.text[layer.span[0]:layer.span[1]]
        where = f"at layer {i + 1} (input {_shape_text(shape)})"
        if path:                                      # innermost group first
            where += ", in " + " inside ".join(f"repetition {r} of [..]*{n}"
                                               for r, n in reversed(path))

        def fail(reason, span=layer.span, where=where):
            raise SpecError.at(spec.text, span, where, reason)

        rule, args, shape_in = TOKENS[layer.kind], layer.args, shape
        context = dict(fail=fail, bias=not (i + 1 < len(flat) and flat[i + 1][0].kind == "BN"),
                       classifier=i == last_fc)
        try:
            with nn.shapes_only():
                modules = rule.build(args, shape, rng=scratch, **context)
                for module in modules:
                    shape = tuple(module.output_shape(shape))
        except (ValueError, TypeError) as err:
            if isinstance(err, SpecError):
                raise
            fail(_reason(err, layer.kind, shape_in, origin))
        if len(shape) == 1 and len(shape_in) == 3:
            origin = f"the output of {token} at layer {i + 1}"

        def make(rng, rule=rule, args=args, shape_in=shape_in, context=context):
            return rule.build(args, shape_in, rng=rng, **context)
        plan.append((Step(i + 1, token, shape_in, shape), make))
    return plan


def _reason(err: Exception, kind: str, shape: tuple, origin: str) -> str:
    """Why a layer's modules do not fit ``shape``, in the grammar's words."""
    while isinstance(err, nn.LayerError):        # inside a block (RES): the layer's own error
        err = err.reason
    if isinstance(err, VolumeError) and len(shape) == 1:
        return (f"{kind} needs a volume (CxHxW), but its input is a vector of {shape[0]} "
                f"({origin}); volume layers go before the first FC or GAP")
    if isinstance(err, SizeRuleError):           # the grammar's name; strict=False is no option
        return err.message(TOKENS[kind].what or kind.lower(), TOKENS[kind].hint or None)
    return f"{type(err).__name__}: {err}"


def build(text_or_spec, input_shape=None, *, rng=None) -> nn.Sequential:
    """Build the network a spec names, as one flat ``nn.Sequential``.

    Parameters
    ----------
    text_or_spec : str or Spec
    input_shape : (C, H, W), optional; required when the spec has no INPUT, and equal to it
        when it has one
    rng : numpy.random.Generator for the initial weights and the dropout masks (default: fresh)

    Raises
    ------
    SpecError
        A syntax error (see :func:`parse`), or a layer that cannot apply to the volume entering
        it: a size rule that does not give an integer or leaves nothing, a volume layer (CONV,
        POOL, GAP, ...) after the net became a vector, a number out of range (``CONV3-0``,
        ``DROPOUT1.5``, ``GN0``), a GN whose groups do not split the channels (``GN3`` on 16),
        an input that disagrees with ``input_shape`` or is missing.

    Examples
    --------
    >>> net = build("INPUT[3x32x32] -> [CONV3-8 -> BN -> RELU -> POOL2]*2 -> FC-10",
    ...             rng=np.random.default_rng(0))
    >>> len(net), net(np.zeros((2, 3, 32, 32), np.float32)).shape
    (10, (2, 10))
    """
    spec = text_or_spec if isinstance(text_or_spec, Spec) else parse(text_or_spec)
    plan = _plan(spec, input_shape)
    rng = np.random.default_rng() if rng is None else rng
    return nn.Sequential(*(module for _, make in plan for module in make(rng)))


def trace(text_or_spec, input_shape=None) -> list[Step]:
    """The volume entering and leaving every layer of the expanded chain, without building it
    (no weights are drawn). Raises ``SpecError`` as :func:`build` does.

    Examples
    --------
    >>> [step.output for step in trace("INPUT[3x32x32] -> CONV5-8/s3p0 -> POOL2 -> GAP")]
    [(8, 10, 10), (8, 5, 5), (8,)]
    """
    spec = text_or_spec if isinstance(text_or_spec, Spec) else parse(text_or_spec)
    return [step for step, _ in _plan(spec, input_shape)]


# ----------------------------------------------------------------------------- the layers
# One line per token: how it is written (its form, a regex of what follows its name, and how the
# regex's groups become its numbers and back) and what it builds on the volume it gets. The
# plan asks the built modules for their shapes, so a token needs no shape rule of its own.

@dataclass(frozen=True)
class Token:
    """A layer of the grammar.

    ``form`` shows it in messages; ``pattern`` matches what follows the name (groups are passed
    to ``read``, which returns its numbers with the defaults filled in, or None when they do
    not parse, or raises ``_Unreadable`` with the reason when there is more to say than the
    form); ``write`` gives the canonical token, name included, through
    :mod:`cnnkit.notation`, the writer of the layers' labels too (None: the bare name);
    ``build(args, shape, *, fail, rng, bias, classifier)`` returns its modules for an input
    ``shape`` (``fail(reason)`` rejects a number; ``bias`` is False before a BN; ``classifier``
    marks the last FC);
    ``what`` and ``hint`` word a size-rule error the grammar's way.
    """

    form: str
    build: Callable[..., list]
    pattern: str = ""
    read: Callable[..., dict | None] = lambda: {}
    write: Callable[[dict], str] | None = None
    example: str = ""
    what: str = ""
    hint: str = ""


def _at_least(fail, value, minimum, what):
    """``value`` an int or an (h, w) pair, each at least ``minimum``."""
    if min(value if isinstance(value, tuple) else (value,)) < minimum:
        fail(f"{what} must be >= {minimum}, got {notation.size(value)}")


def _size(text: str | None, default=None):
    """A size as written: ``3`` -> 3, ``3X2`` -> (3, 2) (height first); None or "" (not
    written) -> ``default``."""
    if not text:
        return default
    h, _, w = text.partition("X")
    return (int(h), int(w)) if w else int(h)


def _window_options(opts: str, letters: str) -> dict | None:
    """``S2P0D2`` (any order, each once, each of ``letters``) -> {"S": "2", "P": "0", "D": "2"};
    None when malformed."""
    pairs = re.findall(rf"([{letters}])({_SIZE})", opts)
    if "".join(k + v for k, v in pairs) != opts or len({k for k, _ in pairs}) != len(pairs):
        return None
    return dict(pairs)


class _Unreadable(Exception):
    """Raised by a token's ``read`` with the reason a token does not parse, when there is more
    to say than its form."""


#: The initialisations a token names (a Gaussian one is written wS) and the tokens that take one.
_NAMED_INITS = tuple(init for init in INITS if init != "gaussian")
_INITIALISED = ("CONV", "LC", "FC")
_INIT_FORMS = f"{', '.join(_NAMED_INITS)}, or wS for S * randn with S > 0 a decimal (w0.01)"


def _is_init(segment: str) -> bool:
    """Whether a '/'-segment (upper case) names an initialisation, well formed or not: a
    scheme's name, or W and a number."""
    return segment.lower() in (*_NAMED_INITS, "gaussian") or bool(
        re.fullmatch(r"W[-+]?[0-9.]+(?:E[-+]?\d+)?", segment))


def _read_init(segment: str) -> dict:
    """``HE`` -> {"init": "he", "weight_scale": None}; ``W0.01`` -> gaussian 0.01. Raises
    _Unreadable for a segment that names no initialisation."""
    name = segment.lower()
    if name in _NAMED_INITS:
        return {"init": name, "weight_scale": None}
    if re.fullmatch(rf"W(?:{_DECIMAL})", segment):
        return {"init": "gaussian", "weight_scale": _scale(segment[1:])}
    if name == "gaussian":
        raise _Unreadable("a Gaussian initialisation is written wS with its scale S, e.g. /w0.01")
    try:
        value = float(segment[1:]) if _is_init(segment) else None
    except ValueError:                                   # W1.2.3
        value = None
    if value is not None and 0 < value < math.inf:
        raise _Unreadable(f"the scale S of /wS is written as a plain decimal, "
                          f"/w{np.format_float_positional(value, trim='-')}, not /{name}")
    if value is not None:
        raise _Unreadable(f"the scale S of /wS must be a positive decimal such as /w0.01, "
                          f"got /{name}")
    raise _Unreadable(f"/{name} is not an initialisation; the initialisations are "
                      f"{_INIT_FORMS}")


def _scale(digits: str) -> float:
    """The scale S of ``wS`` as written (a plain decimal), refused unless a float32 weight holds
    it: the canonical text writes it back, and a run rebuilds its net from that text."""
    value = float(digits)
    tiny, top = float(np.finfo(np.float32).tiny), float(np.finfo(np.float32).max)
    if not any(d in "123456789" for d in digits):
        raise _Unreadable(f"the scale S of /wS must be > 0, got /w{digits.lower()}")
    if not tiny <= value <= top:
        raise _Unreadable(f"the scale S of /wS is {'below' if value < tiny else 'above'} what a "
                          f"float32 weight holds ({tiny:.3g} to {top:.3g})")
    return value


def _segments(tail: str | None, letters: str) -> dict | None:
    """The '/'-segments after a CONV, LC or FC's numbers: at most one of options (``letters``:
    S2P0D2, see :func:`_window_options`) and at most one initialisation, in either order.
    Returns the options (letter -> text) with "init" and "weight_scale" (None when not
    written); None when an options segment is malformed; raises _Unreadable with the reason
    when a segment is no initialisation or a kind of segment comes twice."""
    options, init = None, None
    segments = tail[1:].split("/") if tail else []
    if "" in segments:                                    # CONV3-8/ or CONV3-8//he
        return None
    for segment in segments:
        if letters and segment[0] in "SPDG":              # the options: no init starts so
            given = _window_options(segment, letters)
            if given is None:
                return None
            if options is not None:
                both = (options[1] + segment).lower()
                raise _Unreadable(f"its options go in one segment (/{both}, not /"
                                  f"{options[1].lower()}/{segment.lower()})"
                                  if _window_options(both.upper(), letters) is not None
                                  else "its options go in one segment, each once")
            options = (given, segment)
        else:
            if not _is_init(segment):
                neither = (f"neither its options ({', '.join(letters.lower())}) nor "
                           if letters else "not ")
                raise _Unreadable(f"/{segment.lower()} is {neither}an initialisation; the "
                                  f"initialisations are {_INIT_FORMS}")
            if init is not None:
                raise _Unreadable(f"it has two initialisations, /{init[1].lower()} and "
                                  f"/{segment.lower()}; give one")
            init = (_read_init(segment), segment)
    return {**(options[0] if options else {}),
            **(init[0] if init else {"init": None, "weight_scale": None})}


def _read_window(local: bool):
    def read(k, n, tail):
        """``CONVk-n/s2p0d2g2/he`` -> its numbers and initialisation; padding stays None when
        not written, init None when not written."""
        given = _segments(tail, "SPD" if local else "SPDG")
        if given is None:
            return None
        args = {"kernel": _size(k), "filters": int(n), "stride": _size(given.get("S"), 1),
                "padding": _size(given.get("P")), "dilation": _size(given.get("D"), 1)}
        if not local:
            args["groups"] = _size(given.get("G"), 1)
            if isinstance(args["groups"], tuple):
                return None                   # groups are one number
        return {**args, "init": given["init"], "weight_scale": given["weight_scale"]}
    return read


def _read_fc(n, tail):
    """``FC-n/xavier`` -> its outputs and initialisation (None when not written)."""
    given = _segments(tail, "")
    return None if given is None else {"features": int(n), **given}


def _read_dropout(p, tail):
    """``DROPOUT0.3/infer`` -> p and the mode (the default's when not written)."""
    modes = {option.upper(): mode for mode, option in notation.DROPOUT_MODES.items()}
    segments = tail[1:].split("/") if tail else []
    if "" in segments:                                    # DROPOUT/ or DROPOUT//infer
        return None
    if len(segments) > 1:
        raise _Unreadable(f"a DROPOUT has one mode, /train or /infer, not "
                          f"/{'/'.join(segments).lower()}")
    if segments and segments[0] not in modes:
        raise _Unreadable(f"/{segments[0].lower()} is not a dropout mode; the modes are /train "
                          f"(upscale_in_train, the default) and /infer (downscale_in_infer)")
    return {"p": notation.DROPOUT_P if p is None else float(p),
            "mode": modes[segments[0]] if segments else "upscale_in_train"}


def _initialisation(args, default: dict) -> dict:
    """The keyword arguments ``init`` and ``weight_scale`` of a layer: the written
    initialisation, or ``default`` (the grammar's for the layer's place) when none is."""
    if args["init"] is None:
        return default
    return {"init": args["init"], "weight_scale": args["weight_scale"]}


def _two(value) -> tuple:
    """An int or an (h, w) pair as a pair."""
    return value if isinstance(value, tuple) else (value, value)


def _write_window(name: str):
    return lambda a: notation.window(name, a["kernel"], a["filters"], a["stride"], a["padding"],
                                     a["dilation"], a.get("groups", 1), a["init"],
                                     a["weight_scale"])


def _window(local: bool):
    def build(args, shape, *, fail, rng, bias, **_):
        name = "LC" if local else "CONV"
        k, n, s, p, d = (args[key] for key in ("kernel", "filters", "stride", "padding",
                                              "dilation"))
        for value, what in ((k, "the kernel size k"), (n, "the number of filters n"),
                            (s, "the stride"), (d, "the dilation")):
            _at_least(fail, value, 1, what)
        if not local:
            _at_least(fail, args["groups"], 1, "the number of groups g")
        if p is None:                         # the grammar's default: padding that keeps H x W
            p = notation.same_padding(k, d)
            if p is None:
                spans = [dd * (kk - 1) for kk, dd in zip(_two(k), _two(d))]
                even = "an even number" + ("" if spans[0] == spans[1] else " on an axis")
                fail(f"the window spans D*(k-1)+1 = {notation.size([s + 1 for s in spans])}, "
                     f"{even}, so no padding centres it; give one, e.g. "
                     f"{name}{notation.size(k)}-{n}/p{notation.size([s // 2 for s in spans])}")
        init = _initialisation(args, {})
        if local:
            return [nn.LocallyConnected2d(shape[0], n, k, check_volume(shape, name)[1:],
                                          stride=s, padding=p, dilation=d, rng=rng, **init)]
        return [nn.Conv2d(shape[0], n, k, stride=s, padding=p, dilation=d, groups=args["groups"],
                          bias=bias, rng=rng, **init)]
    return build


def _pool(cls, padded: bool):
    def build(args, shape, *, fail, **_):
        _at_least(fail, args["kernel"], 1, "the pooling window k")
        _at_least(fail, args["stride"], 1, "the stride")
        padding = {"padding": args["padding"]} if padded else {}
        return [cls(args["kernel"], stride=args["stride"], **padding)]
    return build


def _pool_token(name, cls, padded=True):
    """POOL and AVGPOOL take a padding (pP); L2POOL has none."""
    return Token(f"{name}k[/S]" + ("[pP]" if padded else ""), _pool(cls, padded),
                 _POOL + (rf"(?:P({_SIZE}))?" if padded else "()"),
                 lambda k, s, p: {"kernel": _size(k), "stride": _size(s, _size(k)),
                                  "padding": _size(p, 0)},
                 lambda a: notation.pool(name, a["kernel"], a["stride"], a["padding"]),
                 f"{name}2" + (" or POOL3/2" if name == "POOL" else ""), name.lower(),
                 "the window, the stride or the padding (POOLk/SpP)" if padded
                 else "the window or the stride (POOLk/S)")


def _fc(args, shape, *, fail, rng, classifier, **_):
    _at_least(fail, args["features"], 1, "the number of outputs n")
    init = _initialisation(args, {"init": "gaussian", "weight_scale": 1e-2}
                           if classifier else {})
    flatten = [nn.Flatten()] if len(shape) == 3 else []
    return flatten + [nn.Linear(int(np.prod(shape)), args["features"], rng=rng, **init)]


def _dropout(args, shape, *, fail, rng, **_):
    if not 0 <= args["p"] < 1:
        fail(f"p is the probability to drop a unit and must be in [0, 1), got "
             f"{np.format_float_positional(args['p'], trim='-')}")
    return [nn.Dropout.seeded_from(args["p"], rng, args["mode"])]


def _res(args, shape, *, fail, rng, **_):
    _at_least(fail, args["channels"], 1, "the number of channels n")
    _at_least(fail, args["stride"], 1, "the stride")
    return [basic_block(shape[0], args["channels"], args["stride"], rng=rng)]


def _lrn(args, shape, *, fail, **_):
    _at_least(fail, args["size"], 1, "the LRN size n")
    return [nn.LocalResponseNorm(args["size"])]


def _layer_norm(args, shape, **_):
    """LayerNorm(D) on a vector; GroupNorm(1, C) on a volume (one mean and variance per example
    over C x H x W, a scale and shift per channel)."""
    return [nn.LayerNorm(shape[0]) if len(shape) == 1 else nn.GroupNorm(1, shape[0])]


def _group_norm(args, shape, *, fail, **kwargs):
    """GroupNorm(g, C) on a volume, GroupNorm(g, D) on a vector; GN1 is LN. g must divide C."""
    g, c = args["groups"], shape[0]
    if g == 1:                                    # GN1 is LN, and builds what LN builds
        return _layer_norm(args, shape, fail=fail, **kwargs)
    _at_least(fail, g, 1, "the number of groups g")
    if c % g:
        what = "channels" if len(shape) == 3 else "features"
        why = f"{g} does not divide {c}" if g < c else f"there are only {c}"
        fail(f"GN{g} needs the {c} {what} to split into {g} equal groups; {why} (try "
             f"{', '.join(_nearest_groups(c, g))})")
    return [nn.GroupNorm(g, c)]


def _nearest_groups(c: int, g: int, most: int = 4) -> list[str]:
    """The GN tokens (LN for one group) of the ``most`` divisors of ``c`` nearest to ``g``, in
    increasing order; LN alone when ``c`` is 1."""
    small = [d for d in range(2, math.isqrt(c) + 1) if c % d == 0]
    divisors = sorted({*small, *(c // d for d in small), c} - {1})
    near = sorted(sorted(divisors, key=lambda d: (abs(d - g), d))[:most])
    return [notation.group_norm(d) for d in near] or [notation.LAYER_NORM]


def _plain(make):
    """A token without numbers that builds ``make()``."""
    return lambda args, shape, **_: [make()]


TOKENS = {
    "CONV": Token("CONVk-n[/sSpPdDgG][/init]", _window(local=False), _WINDOW,
                  _read_window(local=False), _write_window("CONV"),
                  "CONV3-64 or CONV7-64/s2p3/he", "conv",
                  "the stride or the padding (CONVk-n/sNpM)"),
    "LC": Token("LCk-n[/sSpPdD][/init]", _window(local=True), _WINDOW, _read_window(local=True),
                _write_window("LC"), "LC3-16 or LC3-16/s2/xavier", "locally connected",
                "the stride or the padding (CONVk-n/sNpM)"),
    "POOL": _pool_token("POOL", nn.MaxPool2d),
    "AVGPOOL": _pool_token("AVGPOOL", nn.AvgPool2d),
    "L2POOL": _pool_token("L2POOL", nn.L2Pool2d, padded=False),
    "FC": Token("FC-n[/init]", _fc, r"-(\d+)(/.*)?", _read_fc,
                lambda a: notation.fc(a["features"], a["init"], a["weight_scale"]),
                "FC-10 or FC-100/w0.01"),
    "RELU": Token("RELU", _plain(nn.ReLU)),
    "PRELU": Token("PRELU", lambda args, shape, **_: [nn.PReLU(shape[0])]),
    "SIGMOID": Token("SIGMOID", _plain(nn.Sigmoid)),
    "TANH": Token("TANH", _plain(nn.Tanh)),
    "BN": Token("BN", lambda args, shape, **_: [
        (nn.BatchNorm2d if len(shape) == 3 else nn.BatchNorm1d)(shape[0])]),
    "DROPOUT": Token("DROPOUT[p][/mode]", _dropout, rf"({_DECIMAL})?(/.*)?", _read_dropout,
                     lambda a: notation.dropout(a["p"], a["mode"]),
                     "DROPOUT or DROPOUT0.3 or DROPOUT0.3/infer"),
    "RES": Token("RES-n[/sS]", _res, r"-(\d+)(?:/S?(\d+))?",
                 lambda n, s: {"channels": int(n), "stride": 1 if s is None else int(s)},
                 lambda a: notation.res(a["channels"], a["stride"]),
                 "RES-64 or RES-128/s2"),
    "GAP": Token("GAP", lambda args, shape, **_: [nn.GlobalAvgPool2d(), nn.Flatten()]),
    "LRN": Token("LRN[n]", _lrn, r"(\d+)?",
                 lambda n: {"size": notation.LRN_SIZE if n is None else int(n)},
                 lambda a: notation.lrn(a["size"]), "LRN5"),
    "LN": Token("LN", _layer_norm, write=lambda a: notation.LAYER_NORM),
    "GN": Token("GNg", _group_norm, r"(\d+)", lambda g: {"groups": int(g)},
                lambda a: notation.group_norm(a["groups"]), "GN32 or GN3"),
}
LAYERS = {name: token.form for name, token in TOKENS.items()}      # name -> its form
_BY_LENGTH = sorted(TOKENS, key=len, reverse=True)                  # L2POOL before POOL
