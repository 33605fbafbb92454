"""Video end to end: predict.py --video on a 640x480, 30 fps clip with one face, every frame classified.

    python benchmarks/bench_video.py [--seconds 30] [--runs 3]

The clip (MJPG, made here from samples/astronaut.png moving about) is decoded, its faces detected,
aligned, classified, tracked and smoothed, and the CSV, summary and timeline written; then the same
with --annotate (H.264 encoding of every frame).  Prints the median wall time of each whole command
over --runs, frames per second from it, and the same with the start-up (a one-frame clip's run)
taken off.  Run it with nothing else on the machine.
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import cv2
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_clip(path, frames, fps=30):
    """A 640x480 MJPG clip of the sample face moving from side to side (bench_annotate.py uses it too)."""
    face = cv2.resize(cv2.imread(os.path.join(ROOT, "samples", "astronaut.png")), (300, 300))
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), fps, (640, 480))
    for k in range(frames):
        frame = np.full((480, 640, 3), 110, np.uint8)
        x = int(170 + 150 * np.sin(k / 40))
        frame[90:390, x:x + 300] = face
        writer.write(frame)
    writer.release()


def wall(args, runs):
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, os.path.join(ROOT, "predict.py"), *args], check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    frames = int(args.seconds * 30)
    with tempfile.TemporaryDirectory() as tmp:
        clip, one = os.path.join(tmp, "clip.avi"), os.path.join(tmp, "one.avi")
        make_clip(clip, frames)
        make_clip(one, 1)
        start_up = wall(["--video", one, "--csv", os.path.join(tmp, "one.csv")], args.runs)
        print(f"start-up (a one-frame clip, CSV, summary and timeline): {start_up:.2f} s")
        for name, extra in (("CSV + summary + timeline", []), ("the same + --annotate (H.264)", ["--annotate", os.path.join(tmp, "annotated")])):
            t = wall(["--video", clip, "--csv", os.path.join(tmp, "out.csv"), *extra], args.runs)
            print(f"{name}: {frames} frames in {t:.2f} s = {frames / t:.0f} frames/s whole command, "
                  f"{(frames - 1) / (t - start_up):.0f} frames/s after start-up")


if __name__ == "__main__":
    main()
