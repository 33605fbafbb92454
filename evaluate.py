"""Accuracy reports of trained models on a FER-2013 split.

    python evaluate.py --model acnn_alstm [dnn ...] [--data PATH] [--split PrivateTest] [--tta] [--json]
    python evaluate.py --checkpoint PATH [PATH ...]

--model NAME is the shipped model NAME; --checkpoint takes a checkpoint
folder, or a .tflite file or SavedModel folder written by export.py.
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
import os
import sys
import time

from ferkit import cli
from ferkit.dataset import SPLITS


def report_stem(folder, name, data_info):
    """folder/name, unless a report there was computed on other data (or says not on which): then
    folder/name-<fingerprint>, so that no report is replaced by one of other data."""
    stem = os.path.join(folder, name)
    if os.path.exists(stem + ".json"):
        try:
            with open(stem + ".json") as f:
                old = json.load(f)
            old = old.get("data", {}) if isinstance(old, dict) else {}
        except (ValueError, OSError):  # not JSON, or a folder by that name: not ours to replace
            old = {}
        if old.get("fingerprint") != data_info["fingerprint"]:
            return f"{stem}-{data_info['fingerprint'][:8]}"
    return stem


def report_base(classifier, out=None):
    """(folder, prefix) of a model's reports: a checkpoint's go inside its folder as eval_*, an
    exported model's beside it as NAME.eval_* (the .tflite file or SavedModel folder NAME).
    A shipped model is read-only, so its reports go to runs/eval/<its name>/ instead; out
    (--out) replaces the folder in every case."""
    from ferkit import backends
    path = os.path.normpath(classifier.path)
    if classifier.backend == "checkpoint":
        folder, prefix = classifier.folder, "eval_"
    else:
        folder, prefix = os.path.dirname(path), os.path.splitext(os.path.basename(path))[0] + ".eval_"
    if out is None and backends.is_shipped(path):
        out = os.path.join("runs", "eval", os.path.basename(os.path.normpath(folder)))
    return out or folder, prefix


def report_stems(classifier, args, labels_tag, data_info):
    """{variant suffix ("" and, with --tta, "_tta"): the path its report's .json and .png take, less the extension}."""
    folder, prefix = report_base(classifier, args.out)
    precision = "_bf16" if classifier.bfloat16 else ""
    return {suffix: report_stem(folder, f"{prefix}{args.split}{labels_tag}{suffix}{precision}", data_info)
            for suffix in ("", "_tta")[:1 + args.tta]}


def parse_args():
    parser = cli.ArgumentParser(__doc__)
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--model", nargs="+", metavar="NAME", help="shipped model name(s)")
    who.add_argument("--checkpoint", nargs="+", metavar="PATH",
                     help="checkpoint folder(s) written by train.py, or .tflite files or SavedModel folders written by export.py")
    parser.add_argument("--data", default="data/fer2013.npz", help="preprocess cache or any FER-2013 download (default: %(default)s)")
    parser.add_argument("--split", default="PrivateTest", choices=SPLITS, help="(default: %(default)s)")
    parser.add_argument("--tta", action="store_true", help="also report test-time augmentation (10 mirrored and shifted views)")
    parser.add_argument("--batch-size", type=int, default=256, help="(default: %(default)s)")
    parser.add_argument("--bf16", action="store_true",
                        help="run the model in bfloat16 where the CPU has it (about 1.6x faster; float32 by default)")
    parser.add_argument("--labels", default="fer2013", choices=("fer2013", "ferplus"),
                        help="score against FER-2013's labels, or FER+'s majority labels (faces without a clear "
                             "majority left out and counted; needs a cache made with preprocess.py --ferplus)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace report files there even where this toolkit did not write them")
    parser.add_argument("--out", metavar="DIR",
                        help="folder for the reports (default: beside the model; runs/eval/NAME/ for a shipped "
                             "model, which no command writes into)")
    args = parser.parse_args()
    if args.batch_size < 1:
        parser.error(f"--batch-size must be at least 1, got {args.batch_size}")
    return args


def load_faces(args):
    """--data's --split faces and labels (FER+'s majority labels with --labels ferplus) -> (images uint8
    (N, 48, 48, 1), labels (N,), the report's "data" entry: path, labels, faces, fingerprint[, left_out])."""
    from ferkit import data
    splits = data.load(args.data, splits=(args.split,)).splits
    if len(splits.get(args.split, ((), ()))[1]) == 0:
        have = [s for s, (_, y) in data.load(args.data).splits.items() if len(y)]
        raise cli.UserError(f"{args.data}: no {args.split} faces (it has {', '.join(have) if have else 'no split'}); "
                            "choose another --split or data set")
    images, labels = splits[args.split]
    data_info = {"path": args.data, "labels": args.labels}
    if args.labels == "ferplus":
        from ferkit import ferplus
        votes = data.load_ferplus_votes(args.data, args.split)
        labels, clear = ferplus.majority(votes)
        images, labels = images[clear], labels[clear]
        data_info["left_out"] = int((~clear).sum())  # no clear FER+ majority among the 7 emotions
        print(f"FER+ labels: {len(labels)} {args.split} faces with a clear majority, {data_info['left_out']} left out",
              file=sys.stderr if args.json else sys.stdout)
    data_info.update(faces=len(labels), fingerprint=data.fingerprint(images, labels))
    return images, labels, data_info


def main():
    args = parse_args()
    from ferkit import backends, files, metrics
    paths = args.checkpoint or [backends.resolve(model=m, fast=False) for m in args.model]
    for path in paths:  # a wrong name or folder is reported before TensorFlow loads
        backends.check(path)
    classifiers = [backends.load(p, bfloat16=args.bf16) for p in paths]  # fail on a bad model before reading data
    for classifier in classifiers:  # where the reports go must be writable: find out now, not after minutes of computing
        folder = report_base(classifier, args.out)[0]
        if args.out or backends.is_shipped(classifier.path):
            cli.output_folder(folder, "--out")
        cli.check_writable(folder, "the evaluation reports (give --out, a writable folder)")
    images, labels, data_info = load_faces(args)
    log = sys.stderr if args.json else sys.stdout
    labels_tag = "_ferplus" if args.labels == "ferplus" else ""  # FER+ reports sit beside FER-2013's

    stems = [report_stems(c, args, labels_tag, data_info) for c in classifiers]
    reports = {stem + ext for by_variant in stems for stem in by_variant.values() for ext in (".json", ".png")}
    files.check_outputs([("the report", path, "file") for path in sorted(reports)],  # a model named twice: one report
                        inputs=[args.data] + [p for c in classifiers for p in backends.model_inputs(c.path)],
                        overwrite=args.overwrite)

    reports = []
    for classifier, stem_of in zip(classifiers, stems):
        print(f"{classifier.name}: {classifier.path} ({classifier.backend}) on {args.split} ({len(labels)} faces)", file=log)
        report = {"model": classifier.name, "checkpoint": classifier.path, "split": args.split,
                  "backend": classifier.backend, "quantize": classifier.quantize,
                  "precision": "bfloat16" if classifier.bfloat16 else "float32", "data": data_info}
        start = time.perf_counter()
        probabilities = classifier.predict(images, args.batch_size)
        seconds = time.perf_counter() - start
        report.update(metrics.classification_report(labels, probabilities.argmax(1)))
        report["faces_per_s"] = round(len(labels) / seconds, 1)
        variants = [("", report)]
        if args.tta:
            tta = metrics.classification_report(labels, classifier.predict(images, args.batch_size, tta=True).argmax(1))
            report["tta"] = tta
            variants.append(("_tta", tta))
        for suffix, r in variants:
            stem = stem_of[suffix]
            header = {k: report[k] for k in ("model", "checkpoint", "split", "backend", "quantize", "precision", "data")}
            # Each file holds one variant: a plain run never replaces (or drops) a TTA report.
            files.write_json(stem + ".json", {**header, **r} if suffix else
                             {k: v for k, v in report.items() if k != "tta"})
            metrics.plot_confusion(r, f"{classifier.name} on {args.split}{' (TTA)' if suffix else ''}: "
                                      f"accuracy {r['accuracy']:.4f}", stem + ".png")
            if not args.json:
                print(f"\n{classifier.name}{' with TTA' if suffix else ''}\n{metrics.format_report(r)}")
        print(f"saved {stem}.json and .png" + (" (reports computed on other data are kept)" if "-" in os.path.basename(stem) else ""),
              file=log)
        reports.append(report)

    if args.json:
        print(json.dumps(reports[0] if len(reports) == 1 else reports, indent=2))
    elif len(reports) > 1:
        print(f"\n{'model':<12}{'accuracy':>10}{'macro F1':>10}" + (f"{'TTA acc':>10}{'TTA F1':>10}" if args.tta else "")
              + "  checkpoint")
        for r in reports:
            tta = f"{r['tta']['accuracy']:>10.4f}{r['tta']['macro']['f1']:>10.4f}" if args.tta else ""
            print(f"{r['model']:<12}{r['accuracy']:>10.4f}{r['macro']['f1']:>10.4f}{tta}  {r['checkpoint']}")


if __name__ == "__main__":
    cli.run(main)
