"""Put the fastest exported form of each shipped model beside it, as ferkit/pretrained/NAME/model.tflite.

    python tools/ship_exports.py NAME [NAME ...] [--data data/fer2013.npz]
    python tools/ship_exports.py NAME --from runs/DIR      a newly trained model, shipped as NAME
    python tools/ship_exports.py NAME --from runs/DIR --replace    ... in place of the shipped NAME

predict.py and ferkit.Recognizer run ferkit/pretrained/NAME/model.tflite for
--model NAME when it is there (LiteRT, no TensorFlow).  Which form that is:
the first of int8, dynamic, float16 (fastest first, by benchmarks/bench_export.py; float16
keeps the float16 weights of the shipped checkpoints as they are)
whose PrivateTest accuracy is at least the checkpoint's minus 0.1 point (a model
trained on FER+'s votes is judged on FER+'s majority labels).  The
issue that asked for this fixed the bar on PrivateTest, so this is the one
place where PrivateTest decides something; it only ever picks between
encodings of the same trained weights, never a model or a setting.
--from DIR first puts a finished training folder in place as ferkit/pretrained/NAME (a new name):
its best/ weights halved to float16 (tools/halve_checkpoint.py), config.json, state.json, log.csv
and curves.png, nothing of last/ or TensorBoard's.  It then writes the checkpoint's and the
export's PrivateTest reports beside them (eval_*, model.eval_*, plain and TTA, on the
labels the model learnt), through ferkit.evaluation with out= that folder.  This is the release step: the one command
that writes into the shipped models' folders, which every other command only reads.
"""
import contextlib
import io
import os
import tempfile

from ferkit import backends, checkpoints, cli, data, evaluation, exporting, ferplus, files
from ferkit.dataset import CACHE

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

ORDER = ("int8", "dynamic", "float16", "none")  # fastest first; float16 and none run alike, float16 is half the size
TOLERANCE = 0.001                    # 0.1 point of accuracy


def write_reports(model, data_path, labels):
    """The PrivateTest reports (plain and TTA) of a shipped checkpoint or export, into its folder.
    Made from the checkout with paths relative to it, so the reports name ferkit/pretrained/NAME/... and
    data/..., not the folders of the machine that made them."""
    folder = model if os.path.isdir(model) else os.path.dirname(model)
    model, folder, data_path = (os.path.relpath(p, ROOT) for p in (model, folder, data_path))
    with contextlib.chdir(ROOT):
        evaluation.evaluate(checkpoints=[model], data=data_path, split="PrivateTest", tta=True, labels=labels,
                            out=folder, overwrite=True, log=io.StringIO(), show=False)


def put_in_place(source, folder):
    """A finished training folder's model (float16 best/, config, state, log, curves) as the shipped folder."""
    import shutil
    try:
        state = cli.read_json(os.path.join(source, "state.json"))
    except (OSError, ValueError) as e:
        raise cli.UserError(f"--from {source}: not a training folder train.py finished ({e})") from None
    if not isinstance(state, dict) or not state.get("finished"):
        raise cli.UserError(f"{source}: training has not finished; ship only finished models")
    with files.atomic_path(folder, directory=True) as tmp:
        os.makedirs(os.path.join(tmp, "best"))
        best = os.path.basename(checkpoints.latest(source, "best"))
        for name in os.listdir(os.path.join(source, "best")):
            if name.startswith(best + ".") or name == "checkpoint":
                shutil.copy(os.path.join(source, "best", name), os.path.join(tmp, "best", name))
        for name in ("config.json", "state.json", "log.csv", "curves.png"):
            shutil.copy(os.path.join(source, name), os.path.join(tmp, name))
        before, after = checkpoints.halve(tmp)
    print(f"{folder}: from {source}, best/ {before / 1e6:.2f} MB -> {after / 1e6:.2f} MB (float16)")


def main():
    parser = cli.ArgumentParser(__doc__)
    parser.add_argument("names", nargs="+", metavar="NAME", help="shipped models (ferkit/pretrained/NAME)")
    parser.add_argument("--data", default=os.path.join(ROOT, CACHE), help="(default: %(default)s)")
    parser.add_argument("--from", dest="source", metavar="DIR", help="a finished training folder to ship as NAME")
    parser.add_argument("--replace", action="store_true",
                        help="with --from: replace the shipped NAME with it (the old folder is removed only once the "
                             "new one is complete; the README's figures for NAME must change with it)")
    args = parser.parse_args()
    root = backends.PRETRAINED
    if args.replace and not args.source:
        parser.error("--replace goes with --from DIR")
    if args.source:
        if len(args.names) != 1 or (args.names[0] in backends.shipped_models()) != args.replace:
            parser.error("--from ships one model: a NAME not shipped yet, or a shipped one with --replace")
        put_in_place(args.source, os.path.join(root, args.names[0]))
        for labels in ("fer2013", "ferplus"):  # the new checkpoint's own reports, on both label sets
            write_reports(os.path.join(root, args.names[0]), args.data, labels)
    all_faces, fer2013_labels = data.load(args.data, splits=("PrivateTest",)).splits["PrivateTest"]
    for name in args.names:
        folder = os.path.join(root, name)
        faces, labels = all_faces, fer2013_labels
        learnt = checkpoints.read_config(folder)["settings"].get("labels", "fer2013")
        if learnt in ("ferplus", "both"):  # judged on FER+'s labels, which it chose its checkpoints on
            labels, clear = ferplus.majority(data.load_ferplus_votes(args.data, "PrivateTest"))
            faces, labels = all_faces[clear], labels[clear]
        reference = float((backends.load(folder).predict(faces).argmax(1) == labels).mean())
        work = tempfile.mkdtemp(prefix=f"ship-{name}-")
        for quantize in ORDER:
            path = os.path.join(work, f"{quantize}.tflite")
            exporting.export(path, checkpoint=folder, quantize=quantize, data=args.data, log=io.StringIO())
            accuracy = float((backends.load(path).predict(faces).argmax(1) == labels).mean())
            kept = accuracy >= reference - TOLERANCE
            print(f"{name}: {quantize} {accuracy:.4f} against the checkpoint's {reference:.4f}"
                  + (" -> shipped" if kept else " (more than 0.1 point lower)"), flush=True)
            if kept:
                shipped = os.path.join(folder, backends.FAST_FILE)
                with files.atomic_write(shipped, "wb") as f, open(path, "rb") as export:
                    f.write(export.read())
                write_reports(shipped, args.data, "fer2013" if learnt == "fer2013" else "ferplus")
                break


if __name__ == "__main__":
    cli.run(main)
