"""Photo-to-emotion latency: decode + face detection + classification of a 640x480 photo.

    python benchmarks/bench_predict.py [--model acnn_alstm] [--runs 50]

Prints the median and quartiles of the per-photo time after start-up, the
split between decoding, detection and classification, and the wall time of
`python predict.py samples/astronaut.png` from start to its first result.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

import cv2
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from fer import checkpoints  # noqa: E402
from fer.photos import FaceDetector, crop_faces, read_gray  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = os.path.join(ROOT, "samples", "astronaut.png")


def photo_640x480(path):
    """The bundled 512x512 portrait fitted into a 640x480 JPEG, like a phone or webcam photo."""
    canvas = np.full((480, 640, 3), 90, np.uint8)
    canvas[:, 80:560] = cv2.resize(cv2.imread(SAMPLE), (480, 480), interpolation=cv2.INTER_AREA)
    cv2.imwrite(path, canvas, [cv2.IMWRITE_JPEG_QUALITY, 90])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="acnn_alstm", help="(default: %(default)s)")
    parser.add_argument("--runs", type=int, default=50, help="(default: %(default)s)")
    args = parser.parse_args()

    path = os.path.join(tempfile.mkdtemp(), "photo.jpg")
    photo_640x480(path)
    classifier = checkpoints.Classifier(checkpoints.resolve(model=args.model))
    detector = FaceDetector()
    classifier.predict(crop_faces(read_gray(path), detector.detect(read_gray(path))))  # warm-up
    parts = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        gray = read_gray(path)
        t1 = time.perf_counter()
        boxes = detector.detect(gray)
        t2 = time.perf_counter()
        classifier.predict(crop_faces(gray, boxes))
        t3 = time.perf_counter()
        parts.append((t1 - t0, t2 - t1, t3 - t2, t3 - t0))
    parts = np.array(parts) * 1000
    q1, median, q3 = np.percentile(parts[:, 3], [25, 50, 75])
    print(f"{args.model}: 640x480 photo, {len(boxes)} face(s), {args.runs} runs")
    print(f"per photo: median {median:.1f} ms (quartiles {q1:.1f}-{q3:.1f}); "
          f"decode {np.median(parts[:, 0]):.1f}, detect {np.median(parts[:, 1]):.1f}, classify {np.median(parts[:, 2]):.1f} ms")

    start = time.perf_counter()
    subprocess.run([sys.executable, os.path.join(ROOT, "predict.py"), SAMPLE, "--model", args.model],
                   check=True, capture_output=True, cwd=ROOT)
    print(f"start to first result (python predict.py {os.path.relpath(SAMPLE, ROOT)}): {time.perf_counter() - start:.2f} s")


if __name__ == "__main__":
    main()
