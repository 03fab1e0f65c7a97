"""Using a trained net: ``cnnkit evaluate`` (:func:`cnnkit.evaluation.evaluate_checkpoint`) and
``cnnkit predict`` (:func:`cnnkit.predict_images`)."""

from __future__ import annotations

from ..data import source_names
from ..evaluation import evaluate_checkpoint
from ..finite import quiet_if
from ..inference import predict_images
from .options import (POSITIVE, add_allow_nonfinite, add_choice, add_common_options,
                      add_no_progress)


def add_parsers(sub) -> None:
    """Add the parsers of evaluate and predict to ``sub``, argparse's subparsers."""
    p = sub.add_parser(
        "evaluate", help="accuracy, per-class accuracy and confusion matrix",
        description="Evaluate a checkpoint on the data it was trained on (its test split) or on "
        "--data, preprocessed as in training.",
        examples=("cnnkit evaluate runs/first/model.npz",
                  "cnnkit evaluate runs/first/model.npz --split train"))
    p.add_argument("checkpoint", metavar="CKPT")
    p.add_argument("--data", metavar="SOURCE", help="the images: " + ", ".join(source_names())
                   + ", or FILE.npz (default: the checkpoint's)")
    p.add_argument("--split", choices=("test", "train", "all"), default=None,
                   help="which images of the source (default: test, or all when the source has "
                   "no test split)")
    p.add_argument("--skip-bad", action="store_true",
                   help="skip images that cannot be decoded instead of stopping")
    add_no_progress(p, " while decoding")
    add_allow_nonfinite(p, "evaluate the net")
    add_common_options(p)
    p.set_defaults(run=_evaluate)

    p = sub.add_parser(
        "predict", help="top-k classes of image files (PNG, JPEG, BMP, GIF, WebP, TIFF)",
        description="Classify images with a checkpoint: each is decoded to the channels and "
        "size of the training images, then fitted and normalised as in training; prints the "
        "top-k class names with their probabilities.",
        examples=("cnnkit predict runs/first/model.npz digit.png --top-k 2",))
    p.add_argument("checkpoint", metavar="CKPT")
    p.add_argument("images", metavar="IMAGE", nargs="+")
    p.add_argument("--top-k", type=POSITIVE, default=3, help="(default: %(default)s)")
    add_choice(p, "--invert", ("auto", "yes", "no"), "auto", "invert grey levels; auto inverts "
               "light-background images for MNIST-style nets")
    add_allow_nonfinite(p, "classify with the net")
    add_common_options(p)
    p.set_defaults(run=_predict)


def _evaluate(args) -> int:
    with quiet_if(args.allow_nonfinite):
        result = evaluate_checkpoint(args.checkpoint, args.data, split=args.split,
                                     skip_bad=args.skip_bad, progress=args.progress,
                                     allow_nonfinite=args.allow_nonfinite)
    for line in [*result.notes, *result.lines()]:
        print(line)
    return 0


def _predict(args) -> int:
    with quiet_if(args.allow_nonfinite):
        result = predict_images(args.checkpoint, args.images, invert=args.invert,
                                allow_nonfinite=args.allow_nonfinite)
    for path, top in zip(args.images, result.top(args.top_k)):
        print(f"{path}: " + "  ".join(f"{name} {p:.3f}" for name, p in top))
    return 0
