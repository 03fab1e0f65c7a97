"""Using a trained net: ``cnnkit evaluate`` (:func:`cnnkit.evaluation.evaluate_checkpoint`) and
``cnnkit predict`` (:func:`cnnkit.classify_files.predict_files`, written as it goes by
:func:`cnnkit.classify_files.write_predictions`)."""

from __future__ import annotations

import json
import sys

from ..data import source_names
from ..evaluation import evaluate_checkpoint
from ..finite import quiet_if
from ..classify_files import PREDICTION_FORMATS, predict_files, write_predictions
from .options import (POSITIVE, add_allow_nonfinite, add_choice, add_common_options,
                      add_no_progress)


def add_parsers(sub) -> None:
    """Add the parsers of evaluate and predict to ``sub``, argparse's subparsers."""
    p = sub.add_parser(
        "evaluate", help="accuracy, per-class accuracy and confusion matrix",
        description="Evaluate a checkpoint on the data it was trained on (its test split) or on "
        "--data, preprocessed as in training. Data holding only some of the net's classes "
        "(matched by name) is evaluated on those; a class the net does not know is refused.",
        examples=("cnnkit evaluate runs/first/model.npz --split train",
                  "cnnkit evaluate runs/first/model.npz --json"))
    p.add_argument("checkpoint", metavar="CKPT")
    p.add_argument("--data", metavar="SOURCE", help="the images: " + ", ".join(source_names())
                   + ", or FILE.npz (default: the checkpoint's)")
    p.add_argument("--split", choices=("test", "train", "all"), default=None,
                   help="which images of the source (default: test, or all when the source has "
                   "no test split)")
    p.add_argument("--skip-bad", action="store_true",
                   help="skip images that cannot be decoded instead of stopping")
    p.add_argument("--json", action="store_true", help="print the whole evaluation as one "
                   "JSON object instead of the table (accuracy, per-class rows, the confusion "
                   "matrix, the data, the notes)")
    add_no_progress(p, " while decoding")
    add_allow_nonfinite(p, "evaluate the net")
    add_common_options(p)
    p.set_defaults(run=_evaluate)

    p = sub.add_parser(
        "predict", help="top-k classes of image files and folders (PNG, JPEG, BMP, GIF, WebP, "
        "TIFF)",
        description="Classify images with a checkpoint: each is decoded to the channels and "
        "size of the training images, then fitted and normalised as in training; prints the "
        "top-k class names with their probabilities, a file at a time as its batch is done. "
        "A folder gives its image files in sorted order (hidden ones and other files passed "
        "over and counted on stderr). Exit status: 0, 3 when --skip-bad skipped files, 1 for "
        "an error.",
        examples=("cnnkit predict runs/first/model.npz digit.png --top-k 2",
                  "cnnkit predict runs/first/model.npz . --format csv"))
    p.add_argument("checkpoint", metavar="CKPT")
    p.add_argument("images", metavar="FILE_OR_DIR", nargs="+",
                   help="image files, and folders of them")
    p.add_argument("--recursive", action="store_true",
                   help="also read the images in the folders' subfolders (links to folders "
                   "are not followed)")
    add_choice(p, "--format", PREDICTION_FORMATS, "text", "what to print: lines to read, "
               "one JSON object, or CSV rows with a header")
    p.add_argument("--skip-bad", action="store_true", help="report a file that cannot be "
                   "decoded, or is not a regular file, as skipped (with its reason; exit status "
                   "3) instead of stopping at it")
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
    if args.json:
        print(json.dumps(result.to_dict(), indent=1, allow_nan=False))
        return 0
    for line in [*result.notes, *result.lines()]:
        print(line)
    return 0


EXIT_SKIPPED = 3        # every file answered but those --skip-bad skipped


def _predict(args) -> int:
    with quiet_if(args.allow_nonfinite):
        stream = predict_files(args.checkpoint, args.images, recursive=args.recursive,
                               invert=args.invert, skip_bad=args.skip_bad,
                               allow_nonfinite=args.allow_nonfinite)
        write_predictions(stream, sys.stdout, args.format, args.top_k, args.checkpoint)
    if stream.files.note():          # after the answers: an error stays the only line
        print(stream.files.note(), file=sys.stderr)
    if stream.skipped:
        print(f"skipped {len(stream.skipped)} of {len(stream)} file(s) (the first: "
              f"{stream.skipped[0][1]})", file=sys.stderr)
        return EXIT_SKIPPED
    return 0
