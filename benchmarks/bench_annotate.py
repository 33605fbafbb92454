"""annotate.py on embedded Ray against predict.py, and its scaling from 1 to 2 workers.

    python benchmarks/bench_annotate.py [--photos 900] [--video-minutes 10] [--runs 3]

Made here: --photos 640x480 JPEGs with one face each (samples/astronaut.png and matplotlib's
grace_hopper.jpg, scaled and placed differently), and a --video-minutes 640x480 clip at 10 fps of a
face moving.  Prints the median wall time over --runs of each whole command:
  1. predict.py on the photo folder (--json) and annotate.py on it (every core); their throughput ratio;
  2. annotate.py on the photos with --workers 1 and --workers 2 (each worker single-threaded); speed-up;
  3. annotate.py on the clip (60-second segments) with 1 and 2 workers; speed-up;
and, from 3's 2-worker rate, an estimate of the hours one hour of 30 fps video takes on N such nodes.
Run it with nothing else on the machine.
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from bench_serve import photos as sample_photos  # noqa: E402  (the same 640x480 one-face JPEGs; this script's folder)
from bench_video import make_clip  # noqa: E402  (the same moving-face clip)


def make_photos(folder, n):
    os.makedirs(folder)
    base = sample_photos()
    for k in range(n):
        with open(os.path.join(folder, f"{k:05d}.jpg"), "wb") as f:
            f.write(base[k % len(base)])


def wall(command, runs, out=None):
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, *command] + (["--out", out, "--overwrite"] if out else []), check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=900)
    parser.add_argument("--video-minutes", type=float, default=10)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    predict, annotate = os.path.join(ROOT, "predict.py"), os.path.join(ROOT, "annotate.py")
    with tempfile.TemporaryDirectory() as tmp:
        folder, out = os.path.join(tmp, "photos"), os.path.join(tmp, "out")
        make_photos(folder, args.photos)
        clip = os.path.join(tmp, "clip", "clip.avi")
        os.makedirs(os.path.dirname(clip))
        frames = int(args.video_minutes * 60 * 10)
        make_clip(clip, frames, fps=10)
        n = args.photos
        t_predict = wall([predict, folder, "--json"], args.runs)
        t_annotate = wall([annotate, folder], args.runs, out)
        print(f"1. {n} photos: predict.py {t_predict:.1f} s ({n / t_predict:.0f}/s), annotate.py {t_annotate:.1f} s "
              f"({n / t_annotate:.0f}/s, {os.cpu_count()} workers): ratio {t_predict / t_annotate:.2f}")
        one = wall([annotate, folder, "--workers", "1"], args.runs, out)
        two = wall([annotate, folder, "--workers", "2"], args.runs, out)
        print(f"2. photos, 1 worker {one:.1f} s, 2 workers {two:.1f} s: {one / two:.2f}x")
        one = wall([annotate, clip, "--workers", "1"], args.runs, out)
        two = wall([annotate, clip, "--workers", "2"], args.runs, out)
        print(f"3. a {args.video_minutes:g}-minute clip ({frames} frames, 60-s segments), 1 worker {one:.1f} s, "
              f"2 workers {two:.1f} s: {one / two:.2f}x")
        per_node = frames / two  # frames/s on one 2-core node
        for nodes in (1, 4, 16):
            print(f"   estimate: one hour of 30 fps video (108,000 frames) on {nodes} such node(s): "
                  f"{108000 / (per_node * nodes) / 60:.0f} min")


if __name__ == "__main__":
    main()
