"""annotate.py on embedded Ray against predict.py, and its scaling from 1 to 2 workers.

    python benchmarks/bench_annotate.py [--photos 3000] [--scaling-photos 6000] [--video-minutes 10] [--fps 30] [--runs 3]
                                        [--parts 0123]

Made here: folders of 640x480 JPEGs with one face each (samples/astronaut.png and matplotlib's
grace_hopper.jpg, scaled and placed differently), and a --video-minutes 640x480 clip at --fps of a
face moving.  Prints the median wall time over --runs of each whole command:
  0. annotate.py on one photo: the engine's fixed cost (Ray's start and stop, the workers' start);
  1. predict.py on --photos photos (--json) and annotate.py on them (every core); their throughput ratio;
  2. annotate.py on --scaling-photos photos with --workers 1 and --workers 2 (each worker
     single-threaded); speed-up.  The fixed cost of 0. is in both, so the folder must be large
     enough for the work to outweigh it;
  3. annotate.py on the clip (60-second segments) with 1 and 2 workers; speed-up; and, from the
     2-worker rate, an estimate of the minutes one hour of 30 fps video takes on N such nodes.
--parts chooses which of 0-3 to take.  Run it with nothing else on the machine.
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


def one_and_two_workers(annotate, source, runs, out):
    """annotate.py on `source` with 1 and with 2 workers -> (median seconds with 1, with 2)."""
    return tuple(wall([annotate, source, "--workers", str(n)], runs, out) for n in (1, 2))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=3000, help="for 1 (default: %(default)s)")
    parser.add_argument("--scaling-photos", type=int, default=6000, help="for 2 (default: %(default)s)")
    parser.add_argument("--video-minutes", type=float, default=10, help="for 3 (default: %(default)s)")
    parser.add_argument("--fps", type=float, default=30, help="the clip's frame rate (default: %(default)s)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each command (default: %(default)s)")
    parser.add_argument("--parts", default="0123", help="which of the measurements 0-3 to take (default: all)")
    args = parser.parse_args()
    if not args.parts or set(args.parts) - set("0123"):
        parser.error(f"--parts takes digits 0-3, got {args.parts!r}")
    predict, annotate = os.path.join(ROOT, "predict.py"), os.path.join(ROOT, "annotate.py")
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out")
        if "0" in args.parts:
            one_photo = os.path.join(tmp, "one")
            make_photos(one_photo, 1)
            fixed = wall([annotate, one_photo], args.runs, out)
            print(f"0. annotate.py on one photo (Ray's start and stop, the workers' start): {fixed:.1f} s")
        if "1" in args.parts:
            n, folder = args.photos, os.path.join(tmp, "photos")
            make_photos(folder, n)
            t_predict = wall([predict, folder, "--json"], args.runs)
            t_annotate = wall([annotate, folder], args.runs, out)
            print(f"1. {n} photos: predict.py {t_predict:.1f} s ({n / t_predict:.0f}/s), annotate.py {t_annotate:.1f} "
                  f"s ({n / t_annotate:.0f}/s, {os.cpu_count()} workers): ratio {t_predict / t_annotate:.2f}")
        if "2" in args.parts:
            many = os.path.join(tmp, "many")
            make_photos(many, args.scaling_photos)
            one, two = one_and_two_workers(annotate, many, args.runs, out)
            print(f"2. {args.scaling_photos} photos, 1 worker {one:.1f} s, 2 workers {two:.1f} s: {one / two:.2f}x")
        if "3" in args.parts:
            clip = os.path.join(tmp, "clip", "clip.avi")
            os.makedirs(os.path.dirname(clip))
            frames = int(args.video_minutes * 60 * args.fps)
            make_clip(clip, frames, fps=args.fps)
            one, two = one_and_two_workers(annotate, clip, args.runs, out)
            print(f"3. a {args.video_minutes:g}-minute clip at {args.fps:g} fps ({frames} frames, 60-s segments), "
                  f"1 worker {one:.1f} s, 2 workers {two:.1f} s: {one / two:.2f}x")
            per_node = frames / two  # frames/s on one 2-core node, start and stop included
            for nodes in (1, 4, 16):
                print(f"   estimate: one hour of 30 fps video (108,000 frames) on {nodes} such node(s): "
                      f"{108000 / (per_node * nodes) / 60:.1f} min")


if __name__ == "__main__":
    main()
