"""Sweeps on one machine: two one-CPU trials at once against the same two one after the other, and
Ray's fixed cost, as whole commands (start-up, Ray, TensorFlow's import, training, scoring).

    python benchmarks/bench_tune.py [--data data/fer2013.npz] [--arch acnn_alstm] [--faces 6400] [--repeats 1]

Each trial trains --arch for one epoch on the first --faces Training faces of --data (a slice written
to a temporary cache, with 1,000 PublicTest faces to score), with one CPU and one TensorFlow thread.
Prints the wall time of `ferkit tune` with --concurrent 2 and with --concurrent 1 (medians of
--repeats) and their ratio, then Ray's fixed cost: a one-trial sweep against the same run through
`ferkit train` with one TensorFlow thread.  Run it on an idle machine: a benchmark that shares the
cores is not a figure.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FERKIT = [sys.executable, "-m", "ferkit"]


def timed(command, env=None):
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env=env, cwd=ROOT)
    return time.perf_counter() - start


def slice_cache(source, faces, path):
    with np.load(source) as d:
        np.savez(path, **{f"Training_{k}": d[f"Training_{k}"][:faces] for k in ("images", "labels")},
                 **{f"PublicTest_{k}": d[f"PublicTest_{k}"][:1000] for k in ("images", "labels")})


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=os.path.join(ROOT, "data", "fer2013.npz"))
    parser.add_argument("--arch", default="acnn_alstm")
    parser.add_argument("--faces", type=int, default=6400)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="bench_tune-")
    cache = os.path.join(work, "slice.npz")
    slice_cache(args.data, args.faces, cache)
    common = ["tune", "--arch", args.arch, "--data", cache, "--epochs", "1", "--scheduler", "none"]
    times = {"at once": [], "one after the other": [], "one trial, tune": [], "one trial, train": []}
    one_thread = {**os.environ, "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"}
    for r in range(args.repeats):
        for name, concurrent in (("at once", "2"), ("one after the other", "1")):
            times[name].append(timed(FERKIT + common + ["--seeds", "0,1", "--concurrent", concurrent,
                                                        "--out", os.path.join(work, f"{concurrent}-{r}")]))
        times["one trial, tune"].append(timed(FERKIT + common + ["--grid", "seed=0", "--out", os.path.join(work, f"one-{r}")]))
        times["one trial, train"].append(timed(FERKIT + ["train", "--arch", args.arch, "--data", cache, "--epochs", "1",
                                                         "--out", os.path.join(work, f"train-{r}")], env=one_thread))
    median = {k: float(np.median(v)) for k, v in times.items()}
    print(f"{args.arch}, 1 epoch of {args.faces} faces per trial, {os.cpu_count()} CPUs, median of {args.repeats}:")
    for k, v in median.items():
        print(f"  {k:<22} {v:7.1f} s")
    print(f"two trials at once against one after the other: {median['one after the other'] / median['at once']:.2f}x")
    print(f"Ray's fixed cost (one trial through tune, less the same run through train): "
          f"{median['one trial, tune'] - median['one trial, train']:.1f} s")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
