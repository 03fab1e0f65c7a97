"""Describing a net: ``cnnkit summary``, ``convert``, ``time`` and ``gradcheck``."""

from __future__ import annotations

import json

import numpy as np
from threadpoolctl import threadpool_info

from .. import parallel
from .._atomic import atomic_write_text
from ..app.inputs import short
from ..checkpoint import save_checkpoint
from ..convert import explain, fully_convolutional, output_stride
from ..gradcheck import check_named_model
from ..models import resolve_model
from ..optim import OPTIMIZERS, Adam
from ..summary import check_memory, format_layers, format_notes, summarize
from ..timing import time_layers
from .options import (NON_NEGATIVE, PASSES, POSITIVE, SEED, VOLUME, Count, Real, add_choice,
                      add_common_options, add_input_option, add_model_argument, typed)

DTYPES = ("float32", "float64")


def add_parsers(sub) -> None:
    """Add the parsers of gradcheck, summary, convert and time to ``sub`` (subparsers)."""
    p = sub.add_parser("gradcheck", help="whole-model numerical gradient check in float64",
                       description="Check every parameter's backprop gradient against centred "
                       "differences, in float64, on a random batch.",
                       examples=("cnnkit gradcheck", 'cnnkit gradcheck --model "INPUT[3x8x6] -> '
                                 'CONV3-4 -> BN -> RELU -> POOL2 -> FC-3" --loss svm'))
    p.add_argument("--model", default="convnet-check", metavar="MODEL",
                   help="a checkpoint (.npz: its trained weights), a zoo name or a spec "
                   "(default: %(default)s)")
    add_input_option(p)
    add_choice(p, "--loss", ("softmax", "svm"), "softmax")
    p.add_argument("--batch", type=POSITIVE, default=4, help="batch size (default: %(default)s)")
    p.add_argument("--reg", type=NON_NEGATIVE, default=0.0,
                   help="L2 strength (default: %(default)s)")
    p.add_argument("--num-checks", type=POSITIVE, default=None, help="random entries per "
                   "parameter (default: all, or 20 for nets over 5,000 parameters)")
    p.add_argument("--eval", action="store_true",
                   help="check in eval mode (running statistics, no dropout)")
    p.add_argument("--tol", type=typed(Real(0.0, open_lo=True, expected="a number > 0")),
                   default=1e-6, help="pass threshold (default: %(default)s)")
    p.add_argument("--seed", type=SEED, default=0, help="(default: %(default)s)")
    add_common_options(p)
    p.set_defaults(run=_gradcheck)

    p = sub.add_parser("summary", help="per-layer volumes, memory, parameters and FLOPs (the "
                       "notes' VGG-16 table)",
                       description="A row per layer with its output volume, activations, "
                       "parameters and multiply-adds, the totals, and the notes' estimate of the "
                       "memory a training step needs: activations and their gradients, "
                       "parameters with their gradients and the optimizer's caches, the largest "
                       "im2col buffer. Nothing is run.",
                       examples=("cnnkit summary vgg16 --notes",
                                 "cnnkit summary runs/first/model.npz --batch 64"))
    add_model_argument(p, checkpoint=True)
    p.add_argument("--batch", type=POSITIVE, default=1,
                   help="batch size of the training estimate (default: %(default)s)")
    add_choice(p, "--dtype", DTYPES, "float32")
    add_choice(p, "--optimizer", OPTIMIZERS, "adam", "whose caches the training estimate counts")
    p.add_argument("--notes", action="store_true", help="print the table in the notes' format "
                   "(INPUT: [224x224x3] memory: ...)")
    p.add_argument("--json", metavar="PATH", help="also write the summary as JSON to PATH")
    add_common_options(p)
    p.set_defaults(run=_summary)

    p = sub.add_parser("convert", help="turn a net's FC layers into convolutions, to slide it "
                       "over larger images",
                       description="FC -> conv conversion (the notes' 224 -> 384 example): the "
                       "first FC over a [C'xH'xW'] volume becomes an H'xW' convolution, the later "
                       "ones 1x1 convolutions, so the net gives a map of class scores over a "
                       "larger image in one forward pass.",
                       examples=("cnnkit convert vgg16 --image 3x384x384", "cnnkit convert "
                                 "runs/first/model.npz --image 1x56x56 -o runs/first/fcn.npz"))
    add_model_argument(p, checkpoint=True)
    p.add_argument("--image", type=VOLUME, metavar="CxHxW",
                   help="also give the score map's size on an image of this volume")
    p.add_argument("--output", "-o", metavar="PATH",
                   help="save the converted net (weights included) as a checkpoint")
    add_common_options(p)
    p.set_defaults(run=_convert)

    p = sub.add_parser("time", help="per-layer forward/backward times of a model (Caffe's "
                       "`caffe time`)",
                       description="Time each layer's forward and backward pass (median over "
                       "the passes) on a random batch, then the totals: forward, backward, Adam "
                       "update, training step.",
                       examples=("cnnkit time lenet-bn --batch 32 --iterations 10 --json t.json",
                                 "cnnkit time runs/first/model.npz --batch 8 --iterations 5"))
    add_model_argument(p, checkpoint=True)
    p.add_argument("--batch", type=POSITIVE, default=64, help="batch size (default: %(default)s)")
    p.add_argument("--iterations", type=PASSES, default=50,
                   help="timed passes (default: %(default)s)")
    p.add_argument("--warmup", type=typed(Count(0, 100_000)), default=1,
                   help="untimed passes first (default: %(default)s)")
    add_choice(p, "--dtype", DTYPES, "float32")
    p.add_argument("--json", metavar="PATH", help="also write the table as JSON to PATH")
    p.add_argument("--seed", type=SEED, default=0, help="(default: %(default)s)")
    add_common_options(p)
    p.set_defaults(run=_time)


def _gradcheck(args) -> int:
    result = check_named_model(args.model, args.input, batch=args.batch, loss=args.loss,
                               reg=args.reg, num_checks=args.num_checks, eval_mode=args.eval,
                               tol=args.tol, seed=args.seed)
    print("\n".join(result.lines()))
    return 0 if result.passed else 1


def _summary(args) -> int:
    model, shape, label, _ = resolve_model(args.model, args.input, np.random.default_rng(0),
                                            weights=False)
    report = summarize(model, shape, batch=args.batch, dtype=args.dtype,
                       optimizer=args.optimizer)
    print(f"cnnkit summary {label}: input {'x'.join(map(str, shape))} (CxHxW), batch "
          f"{args.batch}, {args.dtype}, {args.optimizer}")
    print(format_notes(report) if args.notes else format_layers(report))
    if args.json:
        data = {"model": label, "input_shape": list(shape), **report.as_dict()}
        print(f"wrote {atomic_write_text(args.json, json.dumps(data, indent=1))}")
    return 0


def _convert(args) -> int:
    model, shape, label, original = resolve_model(args.model, args.input,
                                                   np.random.default_rng(0),
                                                   weights=bool(args.output))
    model.eval()
    converted = fully_convolutional(model, shape)
    print(f"cnnkit convert {label}: " + "\n".join(explain(model, converted, shape, args.image)))
    if args.output:
        kept = {k: v for k, v in original.items() if k not in ("input_shape", "settings")}
        metadata = {**kept, "converted_from": label, "crop_shape": list(shape),
                    "output_stride": list(output_stride(model, shape))}
        print(f"wrote {save_checkpoint(args.output, converted, extra={'metadata': metadata})}")
    return 0


def _blas_threads():
    """The thread count of NumPy's BLAS (a list if its libraries differ)."""
    counts = sorted({p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"})
    return counts[0] if len(counts) == 1 else (counts or None)


def _time(args) -> int:
    rng = np.random.default_rng(args.seed)
    sketch, shape, name, _ = resolve_model(args.model, args.input, rng, weights=False)
    check_memory(sketch, shape, args.batch, short(name), dtype=args.dtype)
    model, shape, _, _ = resolve_model(args.model, args.input, rng)
    model.astype(args.dtype).train()
    x = rng.standard_normal((args.batch, *shape)).astype(args.dtype)
    threads, blas = parallel.get_num_threads(), _blas_threads()
    prof = time_layers(model, x, iterations=args.iterations, warmup=args.warmup,
                       optimizer=Adam(model.named_parameters(), lr=1e-3), rng=rng,
                       input_grad=False)
    print(f"cnnkit time {name}: batch {args.batch} x {'x'.join(map(str, shape))}, {args.dtype}, "
          f"{model.num_parameters():,} parameters; median of {args.iterations} passes after "
          f"{args.warmup} warm-up; {threads} thread{'s' if threads != 1 else ''} (BLAS "
          f"{'unknown' if blas is None else blas} inside the kernels)")
    print("\n".join(prof.lines(update="Adam update")))
    if args.json:
        report = {"model": name, "batch": args.batch, "dtype": args.dtype, "threads": threads,
                  "blas_threads": blas, "parameters": model.num_parameters(), **prof.to_dict()}
        print(f"wrote {atomic_write_text(args.json, json.dumps(report, indent=1))}")
    return 0
