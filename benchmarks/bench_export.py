"""Exported forms of one model side by side: size, accuracy and speed (the README's export table).

    python benchmarks/bench_export.py [--model acnn_alstm] [--split PrivateTest] [--quantize none float16 dynamic int8]

Exports the model (export.py, into a temporary folder) as a SavedModel and as
TFLite files with each --quantize, then for the checkpoint and every export
prints: file size, accuracy on --split, faces/s at batch 1 (one face per
call, as in a video) and at batch 64, each the median of --repeats timed
runs of at least a second, through ferkit.backends (what evaluate.py and
predict.py call).  Finally the wall time of `evaluate.py --split Training`
through the checkpoint and through each quantized TFLite file, start-up
included (--evaluate-runs each, median).  Run it on an otherwise idle machine.
"""
import argparse
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
from ferkit import backends, checkpoints, data, exporting
from ferkit.cli import size_of


def rate(model, faces, batch, seconds, repeats):
    """Median faces/s of `repeats` runs, each classifying batches of `batch` faces for at least `seconds`."""
    batches = [faces[i:i + batch] for i in range(0, len(faces) - batch + 1, batch)]
    model.predict(batches[0], batch_size=batch)  # warm-up: plans the graph for this batch size
    rates = []
    for _ in range(repeats):
        done, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            model.predict(batches[done // batch % len(batches)], batch_size=batch)
            done += batch
        rates.append(done / (time.perf_counter() - start))
    return float(np.median(rates))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="acnn_alstm", help="a shipped model (ferkit/pretrained/NAME; default: %(default)s)")
    parser.add_argument("--data", default=os.path.join(ROOT, "data", "fer2013.npz"), help="(default: %(default)s)")
    parser.add_argument("--split", default="PrivateTest", help="accuracy split (default: %(default)s)")
    parser.add_argument("--quantize", nargs="+", default=["none", "float16", "dynamic", "int8"], help="TFLite variants")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per figure (default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=1.0, help="length of one timed run (default: %(default)s)")
    parser.add_argument("--evaluate-runs", type=int, default=2, help="evaluate.py runs per form; 0 skips (default: %(default)s)")
    args = parser.parse_args()

    work = tempfile.mkdtemp(prefix="bench_export-")
    folder = os.path.join(work, args.model)  # a copy: evaluate.py writes its reports beside the weights
    shutil.copytree(os.path.join(backends.PRETRAINED, args.model), folder)
    forms = [("checkpoint", "-", folder)]
    exports = [("saved_model", "none", os.path.join(work, "saved_model"))]
    exports += [("tflite", q, os.path.join(work, f"{q}.tflite")) for q in args.quantize]
    for fmt, quantize, path in exports:
        exporting.export(path, checkpoint=folder, format=fmt, quantize=quantize, data=args.data, log=io.StringIO())
        forms.append((fmt, quantize, path))

    faces, labels = data.load(args.data, splits=(args.split,)).splits[args.split]
    print(f"{args.model} on {args.split} ({len(labels)} faces), {os.cpu_count()} CPUs; "
          f"faces/s: median of {args.repeats} runs of {args.seconds:g} s")
    print("| format | quantize | size (MB) | accuracy | vs checkpoint | faces/s, batch 1 | faces/s, batch 64 |")
    print("|---|---|---|---|---|---|---|")
    reference = None
    for fmt, quantize, path in forms:
        model = backends.load(path)
        accuracy = float((model.predict(faces).argmax(1) == labels).mean())
        reference = accuracy if reference is None else reference
        weights = checkpoints.latest(path, "best") + ".data-00000-of-00001" if fmt == "checkpoint" else path
        one = rate(model, faces, 1, args.seconds, args.repeats)
        many = rate(model, faces, 64, args.seconds, args.repeats)
        print(f"| {fmt} | {quantize} | {size_of(weights) / 1e6:.2f} | {accuracy:.4f} | {100 * (accuracy - reference):+.2f} pt "
              f"| {one:,.0f} | {many:,.0f} |", flush=True)
        model.close()

    if args.evaluate_runs:
        timed = {}
        for fmt, quantize, path in forms:
            if fmt == "saved_model" or quantize in ("none", "float16"):
                continue
            runs = []
            for _ in range(args.evaluate_runs):
                start = time.perf_counter()
                subprocess.run([sys.executable, os.path.join(ROOT, "evaluate.py"), "--checkpoint", path, "--data", args.data,
                                "--split", "Training"], check=True, capture_output=True, cwd=ROOT)
                runs.append(time.perf_counter() - start)
            timed[f"{fmt} {quantize}".replace(" -", "")] = float(np.median(runs))
        base = timed["checkpoint"]
        print("evaluate.py --split Training, start-up included (median of "
              f"{args.evaluate_runs}): " + ", ".join(f"{k} {v:.1f} s ({base / v:.2f}x)" for k, v in timed.items()))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
