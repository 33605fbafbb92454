"""Parsing and caching the full FER-2013 CSV: ours against the original notebooks' loop.

    python benchmarks/bench_preprocess.py [--csv ../shared/data/fer2013.csv.gz] [--runs 3]

Baseline: pandas.read_csv, then np.fromstring on each row's pixel string, as
the original notebooks did. Ours: ferkit.data.load + save_cache, as preprocess.py
runs them. Each is run in a fresh process (so peak memory is its own) and
timed end to end; prints medians, the ratio, and peak resident memory.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

BASELINE = """
import numpy as np, pandas as pd
df = pd.read_csv({csv!r})
images = np.array([np.fromstring(p, dtype=np.uint8, sep=' ') for p in df['pixels']]).reshape(-1, 48, 48, 1)
labels = np.eye(7, dtype=np.uint8)[df['emotion'].values]
np.savez({out!r}, images=images, labels=labels)
"""
OURS = """
from ferkit import data
data.save_cache({out!r}, data.load({csv!r}).splits)
"""


def run(code):
    """Seconds and peak resident MB of `code` in a fresh Python process."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code + "\nimport resource; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"],
                          check=True, capture_output=True, text=True)
    return time.perf_counter() - start, int(proc.stdout.split()[-1]) / 1024


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--csv", default=os.path.join(os.path.dirname(ROOT), "shared", "data", "fer2013.csv.gz"))
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    out = os.path.join(tempfile.mkdtemp(), "cache.npz")
    results = {}
    for name, template in (("baseline (pandas + per-row np.fromstring)", BASELINE), ("ours (ferkit.data)", OURS)):
        runs = [run(template.format(csv=args.csv, out=out)) for _ in range(args.runs)]
        seconds = sorted(r[0] for r in runs)[len(runs) // 2]
        results[name] = seconds
        print(f"{name}: median {seconds:.2f} s of {args.runs} runs (all: {', '.join(f'{r[0]:.2f}' for r in runs)}), "
              f"peak memory {max(r[1] for r in runs):.0f} MB")
    base, ours = results.values()
    print(f"speed-up {base / ours:.1f}x; ours includes interpreter start-up and imports")


if __name__ == "__main__":
    main()
