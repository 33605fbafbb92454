"""Accuracy reports of trained models on a FER-2013 split, or on your own labelled photos.

    ferkit evaluate --model acnn_alstm [dnn ...] [--data PATH] [--split PrivateTest] [--tta] [--json]
    ferkit evaluate --checkpoint PATH [PATH ...]
    ferkit evaluate --model acnn_alstm --data my_photos/ [--label-map 1=surprise,2=fear,...] [--faces auto]
    (python evaluate.py takes the same options)

--data may be a folder of emotion folders (my_photos/happy/*.jpg, anger/, sadness/...: synonyms
such as anger, happiness, sadness, fearful, disgusted, surprised map by themselves, contempt is left
out and counted, --label-map names the rest).  Its 48x48 images are used as they are; in any other
photo the largest face is found and aligned as predict does it (--faces detect|as-is forces one way).
Images that cannot be read or hold no face are skipped, counted, and listed in eval_collection.skipped.csv;
eval_collection.faces.csv holds every face's file, box, true and predicted emotion and probabilities,
and eval_collection.mistakes.png pictures the faces it got wrong.

--model NAME is the shipped model NAME; --checkpoint takes a checkpoint
folder, or a .tflite file or SavedModel folder written by export.
For each model: accuracy, per-class precision/recall/F1, macro averages and
the confusion matrix, printed as a table and saved (in --out; by default
beside the checkpoint, and in runs/eval/NAME/ for a shipped model) as
eval_<split>.json and eval_<split>.png (the confusion matrix; for an exported
model EXPORT.tflite or EXPORT/ beside it as EXPORT.eval_<split>.*), with --tta also
eval_<split>_tta.*, with --bf16 *_bf16.*, with --labels ferplus eval_<split>_ferplus*.  Each report records the data it was
computed on (path, faces, a fingerprint of the split); a report computed on
other data is never overwritten: the new one is saved as
eval_<split>-<fingerprint>.* beside it.
Several models print one comparison table.  --json prints the report as JSON
on stdout instead (a list when several models are given).
"""
import json
import sys

from ferkit import cli, evaluation, settings
from ferkit.dataset import SPLITS


def parse_args(argv=None, prog=None):
    parser = cli.ArgumentParser(__doc__, prog=prog)
    cli.add_model_options(parser, many=True, required=True)
    cli.add_data_option(parser)
    parser.add_argument("--split", choices=SPLITS,
                        help="(default: PrivateTest; all of a collection; on a manifest with a split column, "
                             "that split's rows: Training train, PublicTest val, PrivateTest test)")
    parser.add_argument("--tta", action="store_true", help="also report test-time augmentation (10 mirrored and shifted views)")
    cli.add_batch_size(parser, 256)
    parser.add_argument("--bf16", action="store_true",
                        help="run the model in bfloat16 where the CPU has it (about 1.6x faster; float32 by default)")
    parser.add_argument("--labels", default="fer2013", choices=("fer2013", "ferplus"),
                        help="score against FER-2013's labels, or FER+'s majority labels (faces without a clear "
                             "majority left out and counted; needs a cache made with preprocess --ferplus)")
    settings.add_options(parser, ("label_map", "faces"))
    parser.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    cli.add_overwrite(parser, "replace report files there even where this toolkit did not write them")
    parser.add_argument("--out", metavar="DIR",
                        help="folder for the reports (default: beside the model; runs/eval/NAME/ for a shipped "
                             "model, which no command writes into)")
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error(f"--batch-size must be at least 1, got {args.batch_size}")
    return args


def main(argv=None, prog=None):
    args = parse_args(argv, prog)
    reports = evaluation.evaluate(models=args.model or (), checkpoints=args.checkpoint or (), data=args.data,
                                  split=args.split, tta=args.tta, batch_size=args.batch_size, bf16=args.bf16,
                                  labels=args.labels, out=args.out, overwrite=args.overwrite,
                                  log=sys.stderr if args.json else sys.stdout, show=not args.json,
                                  label_map=args.label_map, faces=args.faces)
    if args.json:
        print(json.dumps(reports[0] if len(reports) == 1 else reports, indent=2))
    elif len(reports) > 1:
        print("\n" + evaluation.comparison_table(reports))
