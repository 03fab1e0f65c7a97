"""The notes' layer-pattern notation: parse a spec and build the network it names.

    INPUT[3x32x32] -> [[CONV3-32 -> BN -> RELU]*2 -> POOL2]*3 -> [FC-256 -> RELU -> DROPOUT0.5]*2
                   -> FC-10

Grammar (case-insensitive; whitespace is free between items, a layer token is written without any):

    spec   := [INPUT '->'] chain
    chain  := item ('->' item)*                     ('→' is accepted for '->')
    item   := LAYER | '[' chain ']' ['*' N]         (N >= 0; '*0' drops the group, no '*' = once)
    INPUT  := 'INPUT[' C 'x' H 'x' W ']'

Layers (``LAYERS`` lists the forms). Volumes are written CxHxW throughout (the notes write HxWxC):

    CONVk-n[/sSpPdD]  Conv2d k x k, n filters, stride S (1), dilation D (1), padding P (default
                      D*(k-1)/2, which keeps H and W at stride 1; a window with an even span needs
                      an explicit P). No bias when a BN follows: BN's beta is the bias.
    LCk-n[/sSpPdD]    LocallyConnected2d, the same options and default padding
    POOLk[/S]         max pooling, window k, stride S (default k); AVGPOOL, L2POOL likewise
    FC-n              Linear to n outputs; a Flatten goes in first when the input is a volume
    RELU SIGMOID TANH the activations; BN: BatchNorm2d on a volume, BatchNorm1d on a vector
    DROPOUT[p]        Dropout, p in [0, 1) the probability to drop (default 0.5)
    RES-n[/sS]        a ResNet basic block to n channels with stride S
                      (:func:`cnnkit.models.blocks.basic_block`)
    GAP               GlobalAvgPool2d and a Flatten: the volume becomes a vector of C
    LRN[n]            LocalResponseNorm(n), n = 5 by default, PyTorch's alpha, beta and k

Convolutions and hidden FCs get He initialisation; the last FC (the classifier) starts with
``0.01 * randn`` weights, as in :func:`cnnkit.models.zoo.lenet_bn`.

Every error is a ``SpecError`` whose first line names the token, where it is (the layer number in
the expanded chain and the volume entering it, or the character) and why; the spec follows on the
next line with ``^^^`` under the token.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .. import nn
from ..functional._utils import conv_output_size
from .blocks import basic_block

__all__ = ["SpecError", "Layer", "Repeat", "Spec", "Step", "LAYERS", "parse", "build", "trace",
           "describe", "is_spec"]

# name -> the form shown in messages. Kinds that take numbers have a pattern in _PATTERNS.
LAYERS = {
    "CONV": "CONVk-n[/sSpPdD]", "LC": "LCk-n[/sSpPdD]", "POOL": "POOLk[/S]",
    "AVGPOOL": "AVGPOOLk[/S]", "L2POOL": "L2POOLk[/S]", "FC": "FC-n", "RELU": "RELU",
    "SIGMOID": "SIGMOID", "TANH": "TANH", "BN": "BN", "DROPOUT": "DROPOUT[p]",
    "RES": "RES-n[/sS]", "GAP": "GAP", "LRN": "LRN[n]",
}
_EXAMPLES = {"CONV": "CONV3-64 or CONV7-64/s2p3", "LC": "LC3-16 or LC3-16/s2", "POOL": "POOL2 or "
             "POOL3/2", "AVGPOOL": "AVGPOOL2", "L2POOL": "L2POOL2", "FC": "FC-10",
             "DROPOUT": "DROPOUT or DROPOUT0.3", "RES": "RES-64 or RES-128/s2", "LRN": "LRN5"}
_WINDOW = r"(\d+)-(\d+)(?:/([A-Z0-9]+))?"
_PATTERNS = {"CONV": _WINDOW, "LC": _WINDOW, "POOL": r"(\d+)(?:/S?(\d+))?", "FC": r"-(\d+)",
             "DROPOUT": r"(\d*\.?\d+|\d+\.)?", "RES": r"-(\d+)(?:/S?(\d+))?", "LRN": r"(\d+)?"}
_PATTERNS["AVGPOOL"] = _PATTERNS["L2POOL"] = _PATTERNS["POOL"]
_BY_LENGTH = sorted(LAYERS, key=len, reverse=True)       # L2POOL before POOL, and so on
_WORD = re.compile(r"[A-Za-z0-9_.\-/]")
_STAR = re.compile(r"\*\s*(-?\d*)")
MAX_LAYERS = 10_000                                       # in the expanded chain


class SpecError(ValueError):
    """A spec that does not parse or does not build. ``str(err)`` is three lines: what and why, the
    spec, and a caret line under the offending token. ``err.span`` is the token's (start, end) in
    ``err.text``; ``err.reason`` the why alone."""

    text: str = ""
    span: tuple = (0, 0)
    reason: str = ""

    @classmethod
    def at(cls, text: str, span: tuple, where: str, reason: str) -> "SpecError":
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
    rest = word[len(name):]
    m = re.fullmatch(_PATTERNS.get(name, ""), rest)
    opts = {}
    if m and name in ("CONV", "LC") and m.group(3):
        opts = _window_options(m.group(3))
    if m is None or opts is None:
        example = f", e.g. {_EXAMPLES[name]}" if name in _EXAMPLES else ""
        raise SpecError.at(text, span, where, f"not a valid {name} token; the form is "
                           f"{LAYERS[name]}{example}")
    g = m.groups()
    if name in ("CONV", "LC"):
        args = {"kernel": int(g[0]), "filters": int(g[1]), "stride": opts.get("S", 1),
                "padding": opts.get("P"), "dilation": opts.get("D", 1)}
    elif name.endswith("POOL"):
        args = {"kernel": int(g[0]), "stride": int(g[0]) if g[1] is None else int(g[1])}
    elif name == "FC":
        args = {"features": int(g[0])}
    elif name == "DROPOUT":
        args = {"p": 0.5 if g[0] is None else float(g[0])}
    elif name == "RES":
        args = {"channels": int(g[0]), "stride": 1 if g[1] is None else int(g[1])}
    elif name == "LRN":
        args = {"size": 5 if g[0] is None else int(g[0])}
    else:
        args = {}
    return Layer(name, args, span)


def _window_options(opts: str) -> dict | None:
    """``S2P0D2`` (any order, each once) -> {"S": 2, "P": 0, "D": 2}; None when malformed."""
    pairs = re.findall(r"([SPD])(\d+)", opts)
    if "".join(k + v for k, v in pairs) != opts or len({k for k, _ in pairs}) != len(pairs):
        return None
    return {k: int(v) for k, v in pairs}


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
    return tuple(int(d) for d in dims), span, 4


def _parse_chain(text, tokens, pos, opener):
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
            body, pos = _parse_chain(text, tokens, pos + 1, tokens[pos])
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
    (``CONV3-64/s1p1`` is ``CONV3-64``, ``DROPOUT`` is ``DROPOUT0.5``, ``[X]*1`` is ``[X]``).

    >>> describe("input[3x32x32]→conv3-16/P1S2 -> [fc-10]*1")
    'INPUT[3x32x32] -> CONV3-16/s2 -> [FC-10]'
    """
    spec = text_or_spec if isinstance(text_or_spec, Spec) else parse(text_or_spec)
    head = []
    if spec.input_shape is not None:
        head = [f"INPUT[{'x'.join(map(str, spec.input_shape))}]"]
    return " -> ".join(head + [_canonical(node) for node in spec.nodes])


def _canonical(node) -> str:
    if isinstance(node, Repeat):
        inner = " -> ".join(_canonical(n) for n in node.body)
        return f"[{inner}]" + ("" if node.count == 1 else f"*{node.count}")
    a, kind = node.args, node.kind
    if kind in ("CONV", "LC"):
        defaults = {"S": 1, "P": a["dilation"] * (a["kernel"] - 1) / 2, "D": 1}
        given = {"S": a["stride"], "P": a["padding"], "D": a["dilation"]}
        opts = "".join(f"{key.lower()}{v}" for key, v in given.items()
                       if v is not None and v != defaults[key])
        return f"{kind}{a['kernel']}-{a['filters']}" + (f"/{opts}" if opts else "")
    if kind.endswith("POOL"):
        return f"{kind}{a['kernel']}" + (f"/{a['stride']}" if a["stride"] != a["kernel"] else "")
    if kind == "FC":
        return f"FC-{a['features']}"
    if kind == "DROPOUT":
        return "DROPOUT" + np.format_float_positional(a["p"], trim="-")
    if kind == "RES":
        return f"RES-{a['channels']}" + (f"/s{a['stride']}" if a["stride"] != 1 else "")
    if kind == "LRN":
        return "LRN" + (str(a["size"]) if a["size"] != 5 else "")
    return kind


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
        else:
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
    """[(Step, fail, make)] with make(rng) -> list of modules; raises SpecError at the
    first layer that cannot apply."""
    total = _count(spec.nodes)
    if total > MAX_LAYERS:                  # a typo such as *1000 would otherwise seem to hang
        node = max(spec.nodes, key=lambda n: _count((n,)))
        raise SpecError.at(spec.text, node.span, "", f"the spec expands to {total:,} layers, more "
                           f"than the {MAX_LAYERS:,} a spec may have; check the repeat counts")
    shape = _start_shape(spec, input_shape)
    flat = list(_expand(spec.nodes))
    last_fc = max((i for i, (layer, _) in enumerate(flat) if layer.kind == "FC"), default=None)
    origin = ""                                   # the layer that made the volume a vector
    plan = []
    for i, (layer, path) in enumerate(flat):
        token = spec.text[layer.span[0]:layer.span[1]]
        where = f"at layer {i + 1} (input {_shape_text(shape)})"
        if path:                                      # innermost group first
            where += ", in " + " inside ".join(f"repetition {r} of [..]*{n}"
                                               for r, n in reversed(path))

        def fail(reason, span=layer.span, where=where):
            raise SpecError.at(spec.text, span, where, reason)

        follows_bn = i + 1 < len(flat) and flat[i + 1][0].kind == "BN"
        out, make = _RULES[layer.kind](layer.args, shape, fail, origin,
                                       bias=not follows_bn, classifier=i == last_fc)
        if len(out) == 1 and len(shape) == 3:
            origin = f"the output of {token} at layer {i + 1}"
        plan.append((Step(i + 1, token, shape, out), fail, make))
        shape = out
    return plan


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
        ``DROPOUT1.5``), an input that disagrees with ``input_shape`` or is missing.

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
    net = nn.Sequential()
    for _, fail, make in plan:
        try:
            modules = make(rng)
        except (ValueError, TypeError) as err:        # a module's own check, as a last resort
            fail(f"{type(err).__name__}: {err}")
        for module in modules:
            net.append(module)
    return net


def trace(text_or_spec, input_shape=None) -> list[Step]:
    """The volume entering and leaving every layer of the expanded chain, without building it
    (no weights are drawn). Raises ``SpecError`` as :func:`build` does.

    >>> [step.output for step in trace("INPUT[3x32x32] -> CONV5-8/s3p0 -> POOL2 -> GAP")]
    [(8, 10, 10), (8, 5, 5), (8,)]
    """
    spec = text_or_spec if isinstance(text_or_spec, Spec) else parse(text_or_spec)
    return [step for step, _, _ in _plan(spec, input_shape)]


# ----------------------------------------------------------------------------- the layer rules
# Each rule: (args, shape in, fail, origin, *, bias, classifier) -> (shape out, make(rng)).

def _at_least(fail, value, minimum, what):
    if value < minimum:
        fail(f"{what} must be >= {minimum}, got {value}")


def _volume(shape, fail, origin, what):
    if len(shape) != 3:
        fail(f"{what} needs a volume (CxHxW), but its input is a vector of {shape[0]} "
             f"({origin}); volume layers go before the first FC or GAP")


def _size_rule(shape, k, s, p, d, fail, what):
    try:
        return tuple(conv_output_size(size, k, s, p, d, what, axis)
                     for size, axis in zip(shape[1:], ("height", "width")))
    except ValueError as err:
        message = str(err)
        if "is not an integer" in message:
            # The kernel's hint "or pass strict=False" names an argument a spec cannot set.
            hint = ("the window or the stride (POOLk/s)" if what.endswith("pool")
                    else "the stride or the padding (CONVk-n/sNpM)")
            message = f"{message.split('; change the stride')[0]}; change {hint}"
        fail(message)


def _window(args, shape, fail, origin, *, bias, classifier, local=False):
    name = "LC" if local else "CONV"
    _volume(shape, fail, origin, name)
    k, n, s, p, d = (args[key] for key in ("kernel", "filters", "stride", "padding", "dilation"))
    for value, what in ((k, "the kernel size k"), (n, "the number of filters n"),
                        (s, "the stride"), (d, "the dilation")):
        _at_least(fail, value, 1, what)
    if p is None:
        if d * (k - 1) % 2:
            fail(f"the window spans D*(k-1)+1 = {d * (k - 1) + 1}, an even number, so no padding "
                 f"centres it; give one, e.g. {name}{k}-{n}/p{d * (k - 1) // 2}")
        p = d * (k - 1) // 2
    h, w = _size_rule(shape, k, s, p, d, fail, "locally connected" if local else "conv")
    c = shape[0]
    if local:
        return (n, h, w), lambda rng: [nn.LocallyConnected2d(
            c, n, k, input_size=shape[1:], stride=s, padding=p, dilation=d, rng=rng)]
    return (n, h, w), lambda rng: [nn.Conv2d(c, n, k, stride=s, padding=p, dilation=d,
                                             bias=bias, rng=rng)]


def _pool(cls, what):
    def rule(args, shape, fail, origin, **_):
        _volume(shape, fail, origin, what.upper())
        k, s = args["kernel"], args["stride"]
        _at_least(fail, k, 1, "the pooling window k")
        _at_least(fail, s, 1, "the stride")
        h, w = _size_rule(shape, k, s, 0, 1, fail, what)
        return (shape[0], h, w), lambda rng: [cls(k, stride=s)]
    return rule


def _fc(args, shape, fail, origin, *, classifier, **_):
    n = args["features"]
    _at_least(fail, n, 1, "the number of outputs n")
    d = int(np.prod(shape))
    init = {"init": "gaussian", "weight_scale": 1e-2} if classifier else {}

    def make(rng):
        flatten = [nn.Flatten()] if len(shape) == 3 else []
        return flatten + [nn.Linear(d, n, rng=rng, **init)]
    return (n,), make


def _same(make):
    return lambda args, shape, *a, **k: (shape, lambda rng: [make(shape)])


def _dropout(args, shape, fail, *_, **__):
    p = args["p"]
    if not 0 <= p < 1:
        fail(f"p is the probability to drop a unit and must be in [0, 1), got "
             f"{np.format_float_positional(p, trim='-')}")
    return shape, lambda rng: [nn.Dropout(p, rng=np.random.default_rng(rng.integers(2**63)))]


def _res(args, shape, fail, origin, **_):
    _volume(shape, fail, origin, "RES")
    n, s = args["channels"], args["stride"]
    _at_least(fail, n, 1, "the number of channels n")
    _at_least(fail, s, 1, "the stride")
    # the block's first conv: 3x3, padding 1, strict=False (ResNet floors odd sizes at stride 2)
    h, w = ((size - 1) // s + 1 for size in shape[1:])
    return (n, h, w), lambda rng: [basic_block(shape[0], n, s, rng=rng)]


def _gap(args, shape, fail, origin, **_):
    _volume(shape, fail, origin, "GAP")
    return (shape[0],), lambda rng: [nn.GlobalAvgPool2d(), nn.Flatten()]


def _lrn(args, shape, fail, origin, **_):
    _volume(shape, fail, origin, "LRN")
    _at_least(fail, args["size"], 1, "the LRN size n")
    return shape, lambda rng: [nn.LocalResponseNorm(args["size"])]


_RULES = {
    "CONV": _window,
    "LC": lambda *a, **k: _window(*a, **k, local=True),
    "POOL": _pool(nn.MaxPool2d, "pool"),
    "AVGPOOL": _pool(nn.AvgPool2d, "avgpool"),
    "L2POOL": _pool(nn.L2Pool2d, "l2pool"),
    "FC": _fc,
    "RELU": _same(lambda shape: nn.ReLU()),
    "SIGMOID": _same(lambda shape: nn.Sigmoid()),
    "TANH": _same(lambda shape: nn.Tanh()),
    "BN": _same(lambda shape: (nn.BatchNorm2d if len(shape) == 3 else nn.BatchNorm1d)(shape[0])),
    "DROPOUT": _dropout,
    "RES": _res,
    "GAP": _gap,
    "LRN": _lrn,
}
