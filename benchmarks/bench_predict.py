"""Photo-to-emotion latency: decode + face detection + alignment + classification of a 640x480 photo.

    python benchmarks/bench_predict.py [--model acnn_alstm_ferplus | --checkpoint PATH] [--detector yunet] [--runs 50]

--model NAME runs what predict.py runs for it (the shipped ferkit/pretrained/NAME/model.tflite
on LiteRT); --checkpoint times any other form, e.g. the checkpoint folder itself.

Prints the median and quartiles of the per-photo time after start-up (the
path predict.py and ferkit.Recognizer take), the split between decoding,
detection, alignment and classification, and the median wall time of
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

from ferkit.backends import DEFAULT_MODEL
from ferkit.faces import crop_face
from ferkit.photos import read_image
from ferkit.recognizer import Recognizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = os.path.join(ROOT, "samples", "astronaut.png")


def photo_640x480(path):
    """The bundled 512x512 portrait fitted into a 640x480 JPEG, like a phone or webcam photo."""
    canvas = np.full((480, 640, 3), 90, np.uint8)
    canvas[:, 80:560] = cv2.resize(cv2.imread(SAMPLE), (480, 480), interpolation=cv2.INTER_AREA)
    cv2.imwrite(path, canvas, [cv2.IMWRITE_JPEG_QUALITY, 90])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=DEFAULT_MODEL, help="(default: %(default)s, predict.py's)")
    parser.add_argument("--checkpoint", help="a checkpoint folder, .tflite file or SavedModel folder instead")
    parser.add_argument("--detector", default="yunet", choices=("yunet", "haar"), help="(default: %(default)s)")
    parser.add_argument("--runs", type=int, default=50, help="timed photos (default: %(default)s)")
    parser.add_argument("--starts", type=int, default=5, help="timed predict.py start-ups (default: %(default)s)")
    args = parser.parse_args()

    path = os.path.join(tempfile.mkdtemp(), "photo.jpg")
    photo_640x480(path)
    recognizer = Recognizer(args.model, checkpoint=args.checkpoint, detector=args.detector)
    detector, classifier = recognizer.detector, recognizer.classifier
    recognizer.recognize(path)  # warm-up
    parts = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        image = read_image(path)
        t1 = time.perf_counter()
        detections = detector.detect(image)
        t2 = time.perf_counter()
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        faces = np.stack([crop_face(gray, d.box, d.landmarks) for d in detections])[..., None]
        t3 = time.perf_counter()
        classifier.predict(faces)
        t4 = time.perf_counter()
        parts.append((t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0))
    parts = np.array(parts) * 1000
    q1, median, q3 = np.percentile(parts[:, 4], [25, 50, 75])
    print(f"{args.checkpoint or args.model} ({classifier.backend}) with {args.detector}: 640x480 photo, "
          f"{len(detections)} face(s), {args.runs} runs")
    print(f"per photo: median {median:.1f} ms (quartiles {q1:.1f}-{q3:.1f}); decode {np.median(parts[:, 0]):.1f}, "
          f"detect {np.median(parts[:, 1]):.1f}, align {np.median(parts[:, 2]):.2f}, classify {np.median(parts[:, 3]):.1f} ms")
    timed = []
    for _ in range(args.starts):
        start = time.perf_counter()
        who = ["--checkpoint", args.checkpoint] if args.checkpoint else ["--model", args.model]
        subprocess.run([sys.executable, os.path.join(ROOT, "predict.py"), SAMPLE, *who,
                        "--detector", args.detector], check=True, capture_output=True, cwd=ROOT)
        timed.append(time.perf_counter() - start)
    print(f"start to first result (python predict.py {os.path.relpath(SAMPLE, ROOT)}): median {np.median(timed):.2f} s "
          f"of {args.starts} (min {min(timed):.2f}, max {max(timed):.2f})")


if __name__ == "__main__":
    main()
