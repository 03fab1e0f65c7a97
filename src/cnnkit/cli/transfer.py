"""Moving a net between cnnkit and other tools: ``cnnkit export`` (ONNX, safetensors) and
``cnnkit import`` (a PyTorch or safetensors state dict into a checkpoint)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ..app.config import volume_text
from ..checkpoint import UNKNOWN_NORMALISATION, save_checkpoint
from ..errors import UsageError
from ..data import DataError
from ..export import DEFAULT_OPSET, served_metadata, to_onnx
from ..files import check_output_path
from ..finite import check_net
from ..io import save_safetensors
from ..models import is_checkpoint, resolve_model
from ..weights import WeightsError, class_names, load_weights, recorded_preprocessing
from .options import (MODEL_HELP, POSITIVE, SEED, Count, add_allow_nonfinite, add_common_options,
                      add_input_option, add_model_argument, typed)

_OPSET = typed(Count(1, expected="an opset number"))
_BATCH = typed(Count(1, 2 ** 31 - 1, '"dynamic" or a batch size from 1 to 2,147,483,647'))


def _batch(text):
    """--batch: "dynamic" or a positive int."""
    return text if text == "dynamic" else _BATCH(text)


def _floats(text):
    """--mean/--std: comma-separated numbers, one per channel."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, such as "
                                         f"0.485,0.456,0.406, got {text!r}") from None
    if not all(np.isfinite(values)):
        raise argparse.ArgumentTypeError(f"expected finite numbers, got {text!r}")
    return values


def add_parsers(sub) -> None:
    """Add the parsers of export and import to ``sub``, argparse's subparsers."""
    p = sub.add_parser(
        "export", help="write a net as ONNX (for onnxruntime and other servers) or its weights "
        "as safetensors",
        description="Write a checkpoint's net (or a zoo model or spec, with fresh weights) as an "
        "ONNX model of its eval forward, input \"input\" and output \"output\", checked by "
        "onnx.checker; or, for -o *.safetensors, its weights under PyTorch's names. With "
        "--include-preprocessing the graph takes the training images as stored (uint8, N x H x "
        "W, or N x H x W x C for colour) and answers softmax probabilities. ONNX needs the onnx "
        "package (pip install \"cnnkit[onnx]\").",
        examples=("cnnkit export runs/first/model.npz -o first.onnx --include-preprocessing",
                  "cnnkit export runs/first/model.npz -o first.safetensors"))
    add_model_argument(p, checkpoint=True)
    p.add_argument("--output", "-o", metavar="PATH", required=True,
                   help="the file to write: *.onnx or *.safetensors")
    p.add_argument("--batch", type=_batch, default="dynamic", metavar="dynamic|N",
                   help="the batch axis: any size (default) or a fixed N")
    p.add_argument("--opset", type=_OPSET, default=None,
                   help=f"ONNX opset (default: {DEFAULT_OPSET}; 18 for --include-preprocessing "
                   f"with a resize, whose antialiasing needs 18)")
    p.add_argument("--include-preprocessing", action="store_true",
                   help="put the checkpoint's preprocessing in the graph: input \"images\", "
                   "uint8 at the training images' size (N x H x W grey, N x H x W x C colour); "
                   "/255, the fit to the net's input (centre or resize), the mean and std, the "
                   "net, and a softmax: output \"probabilities\"")
    p.add_argument("--external-data", action="store_true", help="keep the weights in a file "
                   "beside the .onnx (ONNX's external data; always so above 2 GiB)")
    p.add_argument("--num-classes", type=POSITIVE, default=None,
                   help="a zoo model's number of classes (default: its own)")
    p.add_argument("--seed", type=SEED, default=0,
                   help="seed of a zoo model's or spec's fresh weights (default: %(default)s)")
    add_allow_nonfinite(p, "export the net")
    add_common_options(p)
    p.set_defaults(run=_export)

    p = sub.add_parser(
        "import", help="load a PyTorch .pt/.pth or a .safetensors file into a net and save a "
        "checkpoint",
        description="Build MODEL (a zoo name or a spec) without drawing weights, fill it from "
        "FILE (a PyTorch state dict saved with torch.save, read without torch and without "
        "unpickling anything but tensors; a .safetensors file; or another checkpoint), checking "
        "every name and shape, and save it as a cnnkit checkpoint. Missing, unexpected and "
        "mismatched arrays are listed, and refused unless --partial.",
        examples=("cnnkit import first.safetensors --model lenet-bn -o first-again.npz",))
    p.add_argument("file", metavar="FILE", help="the weights: .pt, .pth, .bin or .safetensors")
    p.add_argument("--model", required=True, metavar="MODEL", help=MODEL_HELP)
    add_input_option(p)
    p.add_argument("--output", "-o", metavar="PATH", required=True,
                   help="the checkpoint to write (.npz)")
    p.add_argument("--num-classes", type=POSITIVE, default=None,
                   help="a zoo model's number of classes (default: its own)")
    p.add_argument("--by", choices=("auto", "name", "order"), default="auto",
                   help="pair the file's arrays with the net's by name (PyTorch's names) or by "
                   "position (a net whose modules are named differently, such as torchvision's "
                   "resnet18); auto (the default): by name when any name is shared, else by "
                   "position when every pair agrees in shape")
    p.add_argument("--partial", action="store_true",
                   help="load what matches and keep fresh weights for the rest")
    p.add_argument("--seed", type=SEED, default=0,
                   help="seed of the fresh weights with --partial (default: %(default)s)")
    p.add_argument("--mean", type=_floats, default=None, metavar="M1,M2,...",
                   help="per-channel mean the net's training normalised with (pixels in [0, 1]),"
                   " recorded for predict and evaluate (default: 0)")
    p.add_argument("--std", type=_floats, default=None, metavar="S1,S2,...",
                   help="per-channel standard deviation, likewise (default: 1)")
    names = p.add_mutually_exclusive_group()
    names.add_argument("--classes", metavar="A,B,...", help="the names of the net's classes, "
                       "in the order of its scores, for predict and evaluate (default: those "
                       "the file records, else 0, 1, ...)")
    names.add_argument("--classes-file", metavar="FILE", help="the same, one name per line "
                       "(UTF-8)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing -o file")
    add_allow_nonfinite(p, "import the weights")
    add_common_options(p)
    p.set_defaults(run=_import)


def _recorded_preprocessing(args, shape):
    """The checkpoint's Preprocessing for --include-preprocessing, as predict takes it; refused
    in one line where predict would refuse the checkpoint, or where --input asks for another
    input volume than the one its images were fitted to."""
    from ..inference import load_for_inference    # here: Pillow, kept out of a cheap start-up

    try:
        _, preprocessing, _, _ = load_for_inference(args.model, allow_nonfinite=True)
    except DataError as err:
        raise UsageError(f"--include-preprocessing: {err}") from None
    if tuple(shape) != tuple(preprocessing.input_shape):
        raise UsageError(f"--input {volume_text(shape)} differs from the "
                         f"{volume_text(preprocessing.input_shape)} input {args.model} records "
                         f"its images' preprocessing for; leave --input out with "
                         f"--include-preprocessing")
    return preprocessing


def _export(args) -> int:
    output = Path(args.output)
    kind = output.suffix.lower()
    if kind not in (".onnx", ".safetensors"):
        raise UsageError(f"-o {args.output}: the file must end in .onnx (the net) or "
                         f".safetensors (its weights)")
    if kind == ".safetensors" and (args.batch != "dynamic" or args.opset is not None
                                   or args.external_data or args.include_preprocessing):
        raise UsageError("--batch, --opset, --external-data and --include-preprocessing apply "
                         "to an .onnx file, not to .safetensors")
    if args.include_preprocessing and not is_checkpoint(args.model):
        raise UsageError(f"--include-preprocessing needs a checkpoint (.npz), whose metadata "
                         f"records its training images' size, mean and std; {args.model!r} is "
                         f"a zoo model or spec")
    model, shape, label, metadata = resolve_model(args.model, args.input,
                                                   np.random.default_rng(args.seed),
                                                   num_classes=args.num_classes)
    model.eval()
    check_net(model, label, allow=args.allow_nonfinite)       # label: a checkpoint's path
    out_shape = tuple(model.output_shape(shape))
    if kind == ".onnx":
        preprocessing = _recorded_preprocessing(args, shape) if args.include_preprocessing \
            else None
        proto = to_onnx(model, shape, output, opset=args.opset, batch=args.batch,
                        metadata=served_metadata(metadata), doc=f"{label}, exported by cnnkit",
                        external_data=args.external_data or None, preprocessing=preprocessing,
                        allow_nonfinite=True)  # checked above, for both kinds, naming the file
        batch = "N" if args.batch == "dynamic" else str(args.batch)
        if preprocessing is None:
            inputs = f"input \"input\" {batch}x{volume_text(shape)}, output \"output\""
        else:
            c, h, w = preprocessing.image_shape
            fit = {"centre": "centred, ", "resize": "resized, "}.get(preprocessing.fit, "")
            inputs = (f"input \"images\" uint8 {batch}x{h}x{w}{f'x{c}' if c > 1 else ''} "
                      f"({preprocessing.describe()}: /255, {fit}mean and std in the graph), "
                      f"output \"probabilities\"")
        print(f"wrote {output}: ONNX opset {proto.opset_import[0].version}, {inputs} "
              f"{batch}x{volume_text(out_shape)}, {model.num_parameters():,} parameters")
    else:
        save_safetensors(model, output, metadata={
            key: json.dumps(value) for key, value in served_metadata(metadata).items()})
        print(f"wrote {output}: {len(model.state_dict())} tensors under PyTorch's names "
              f"(safetensors.torch.load_file reads them)")
    if not is_checkpoint(args.model):
        print(f"note: {label} is built here with freshly drawn weights (seed {args.seed}), not "
              f"trained ones; export a checkpoint for those")
    return 0


def _classes(args, model, shape) -> list[str] | None:
    """The class names of --classes or --classes-file, one per score of the net (None when
    neither is given)."""
    if args.classes is None and args.classes_file is None:
        return None
    scores = tuple(model.output_shape(shape))
    if len(scores) != 1:
        raise UsageError(f"--classes: {args.model} gives scores of shape {scores} per image; "
                         f"class names need a vector of scores")
    return class_names(scores[0], text=args.classes, path=args.classes_file)


def _import(args) -> int:
    if is_checkpoint(args.model):
        raise UsageError(f"--model {args.model}: give the architecture (a zoo name or a spec) "
                         f"the weights are for, not a checkpoint")
    output = Path(args.output)
    if output.suffix.lower() != ".npz":
        raise UsageError(f"-o {args.output}: a cnnkit checkpoint is an .npz file")
    check_output_path(output)      # a FIFO or device there: no --overwrite would help
    if output.exists() and not args.overwrite:
        raise UsageError(f"{output} exists; pass --overwrite to replace it")
    # without --partial every weight comes from the file, so none is drawn
    model, shape, label, _ = resolve_model(args.model, args.input,
                                            np.random.default_rng(args.seed),
                                            weights=args.partial, num_classes=args.num_classes)
    for option in ("mean", "std"):
        values = getattr(args, option)
        if values is not None and len(values) != shape[0]:
            raise UsageError(f"--{option} gives {len(values)} values; the net takes {shape[0]} "
                             f"channel{'s' if shape[0] > 1 else ''}")
    classes = _classes(args, model, shape)
    try:
        match = load_weights(model, args.file, by=args.by, strict=not args.partial,
                             allow_nonfinite=args.allow_nonfinite)
    except WeightsError as err:
        if err.match is not None and not err.match.ok:
            print(err.match.problems())     # the listing on stdout; stderr has the one line
        raise
    print(match.describe())
    if not match.ok:                 # --partial: say what was left alone
        print(match.problems())
    metadata = {"input_shape": list(shape), "imported_from": str(args.file), "model": label,
                **recorded_preprocessing(args.file, shape)}
    if args.mean is not None or args.std is not None:
        metadata.update(mean=list(args.mean or [0.0] * shape[0]),
                        std=list(args.std or [1.0] * shape[0]))
        metadata.pop(UNKNOWN_NORMALISATION, None)
    if classes is not None:
        metadata["classes"] = classes          # where a trained run's class names live
    path = save_checkpoint(output, model.eval(), extra={"metadata": metadata})
    print(f"wrote {path}: {label} on {volume_text(shape)} input, {model.num_parameters():,} "
          f"parameters")
    if metadata.get(UNKNOWN_NORMALISATION):
        print("note: the file does not say how its net's inputs were normalised; predict and "
              "evaluate refuse this checkpoint until you import with --mean and --std")
    for line in check_net(model, path, allow=True)[:1]:     # only with --allow-nonfinite
        print(f"note: {line}; predict, evaluate, report and export refuse this checkpoint "
              f"without --allow-nonfinite")
    return 0
