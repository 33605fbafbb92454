"""Round-trip fidelity of the photo path: FER-2013 faces put into photos, found, aligned and classified again.

    python benchmarks/bench_roundtrip.py [--model acnn_alstm_ferplus] [--detector yunet] [--faces 3589] [--seed 0]
                                         [--labels fer2013|ferplus]

Each PublicTest face is upscaled to 150-250 px (bicubic), rotated by up to
+-15 degrees and pasted at a random place into a 640x480 photo with a smooth
random background.  The photo then goes through exactly what predict.py does
(ferkit.Recognizer: detect, align onto the FER-2013 template, classify).

Prints the detection rate (a face found whose box holds the pasted face's
centre) and the accuracy of the photo path against the same faces classified
directly (as predict.py --no-detect would); for comparison, also the accuracy
when the detector's box is squashed to 48x48 without alignment.  This is how
the framing is tuned without labelled real photos, so it runs on PublicTest
(never PrivateTest).  --labels ferplus scores against FER+'s majority labels,
on the PublicTest faces that have a clear one (a cache made with
preprocess.py --ferplus).
"""
import argparse
import os
import sys
import time

import cv2
import numpy as np
from tqdm import tqdm

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from ferkit import DEFAULT_MODEL, cli, data  # noqa: E402
from ferkit.faces import EMOTIONS, face_to_48  # noqa: E402
from ferkit.recognizer import Recognizer  # noqa: E402

PHOTO = (480, 640)


def face_photo(face, rng, size_range=(150, 250), max_angle=15.0):
    """uint8 face (48, 48) -> (BGR photo (480, 640, 3), the face's centre (x, y) in it).

    The face is upscaled to a random size, rotated by a random angle and pasted at a
    random place, whole, onto blurred noise (a background with no face-like structure).
    """
    size = int(rng.integers(size_range[0], size_range[1] + 1))
    big = cv2.resize(face, (size, size), interpolation=cv2.INTER_CUBIC)
    angle = rng.uniform(-max_angle, max_angle)
    half = size * (abs(np.cos(np.radians(angle))) + abs(np.sin(np.radians(angle)))) / 2  # half the rotated extent
    cx = rng.uniform(half, PHOTO[1] - half)
    cy = rng.uniform(half, PHOTO[0] - half)
    matrix = cv2.getRotationMatrix2D(((size - 1) / 2, (size - 1) / 2), angle, 1.0)
    matrix[:, 2] += (cx - (size - 1) / 2, cy - (size - 1) / 2)
    pasted = cv2.warpAffine(big, matrix, PHOTO[::-1], flags=cv2.INTER_LINEAR)
    mask = cv2.warpAffine(np.full_like(big, 255), matrix, PHOTO[::-1], flags=cv2.INTER_NEAREST)
    noise = rng.integers(0, 256, PHOTO, dtype=np.uint8)
    background = cv2.normalize(cv2.GaussianBlur(noise, (0, 0), 12), None, 30, 220, cv2.NORM_MINMAX)
    photo = np.where(mask > 0, pasted, background)
    return cv2.cvtColor(photo, cv2.COLOR_GRAY2BGR), (cx, cy)


def face_at(detections, point):
    """The first detection whose box holds point (x, y), or None: the pasted face, found."""
    x, y = point
    return next((d for d in detections if d.box[0] <= x <= d.box[0] + d.box[2] and d.box[1] <= y <= d.box[1] + d.box[3]), None)


def round_trip(recognizer, faces, labels, seed=0, progress=True):
    """Faces uint8 (N, 48, 48, 1) with labels (N,) -> dict of counts and accuracies (see the module docstring)."""
    rng = np.random.default_rng(seed)
    direct = recognizer.classifier.predict(faces).argmax(1)
    found, via_photo, squashed = np.zeros(len(faces), bool), np.full(len(faces), -1), np.full(len(faces), -1)
    for i in tqdm(range(len(faces)), desc="photos", unit="photo", disable=not progress, file=sys.stderr):
        photo, centre = face_photo(faces[i, :, :, 0], rng)
        detections = recognizer.detector.detect(photo)
        hit = face_at(detections, centre)
        if hit is None:
            continue
        found[i] = True
        results, _, _ = recognizer.analyse(photo, detections=detections)  # the same path, detected once
        via_photo[i] = EMOTIONS.index(results[detections.index(hit)]["emotion"])
        x, y, w, h = hit.box
        box_crop = face_to_48(cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY)[y:y + h, x:x + w])
        squashed[i] = recognizer.classifier.predict(box_crop[None, :, :, None]).argmax()
    n, hits = len(faces), int(found.sum())
    return {
        "faces": n, "found": hits, "detection_rate": hits / n,
        "direct_accuracy": float((direct == labels).mean()),
        "direct_accuracy_found": float((direct[found] == labels[found]).mean()) if hits else 0.0,
        "photo_accuracy_found": float((via_photo[found] == labels[found]).mean()) if hits else 0.0,
        "squashed_accuracy_found": float((squashed[found] == labels[found]).mean()) if hits else 0.0,
        "photo_accuracy_all": float((via_photo == labels).mean()),
        "agreement_found": float((via_photo[found] == direct[found]).mean()) if hits else 0.0,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=DEFAULT_MODEL, help="(default: %(default)s, predict.py's)")
    parser.add_argument("--checkpoint", metavar="PATH", help="a checkpoint folder, .tflite file or SavedModel instead")
    parser.add_argument("--detector", default="yunet", choices=("yunet", "haar"), help="(default: %(default)s)")
    parser.add_argument("--data", default="data/fer2013.npz", help="preprocess cache or FER-2013 download (default: %(default)s)")
    parser.add_argument("--faces", type=int, default=0, help="use the first N PublicTest faces (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    parser.add_argument("--labels", default="fer2013", choices=("fer2013", "ferplus"), help="(default: %(default)s)")
    args = parser.parse_args()

    faces, labels = data.load(args.data, splits=("PublicTest",)).splits["PublicTest"]
    if args.labels == "ferplus":
        from ferkit import ferplus
        labels, clear = ferplus.majority(data.load_ferplus_votes(args.data, "PublicTest"))
        faces, labels = faces[clear], labels[clear]
    if args.faces > 0:
        faces, labels = faces[:args.faces], labels[:args.faces]
    recognizer = Recognizer(args.model, args.checkpoint, detector=args.detector)
    start = time.perf_counter()
    r = round_trip(recognizer, faces, labels, args.seed)
    print(f"{args.checkpoint or args.model} ({recognizer.classifier.backend}) with {args.detector}, {args.labels} labels: "
          f"{r['faces']} PublicTest faces in 640x480 photos "
          f"(150-250 px, rotated up to 15 degrees), {time.perf_counter() - start:.0f} s")
    print(f"  detection rate:                  {r['detection_rate']:.4f} ({r['found']} of {r['faces']})")
    print(f"  accuracy, faces found, direct:   {r['direct_accuracy_found']:.4f}")
    print(f"  accuracy, faces found, photo:    {r['photo_accuracy_found']:.4f} "
          f"({100 * (r['photo_accuracy_found'] - r['direct_accuracy_found']):+.2f} points: "
          f"{round(r['photo_accuracy_found'] * r['found'])} right against {round(r['direct_accuracy_found'] * r['found'])}; "
          f"same top-1 as direct on {r['agreement_found']:.4f})")
    print(f"  accuracy, box squashed to 48x48: {r['squashed_accuracy_found']:.4f} (no alignment, for comparison)")
    print(f"  accuracy, all faces (missed = wrong): photo {r['photo_accuracy_all']:.4f}, direct {r['direct_accuracy']:.4f}")


if __name__ == "__main__":
    cli.run(main)
