"""FER-2013 faces put into synthetic photos, and the photo path's round trip over them.

  photo, centre = face_photo(face uint8 (48, 48), rng)    BGR (480, 640, 3), the face's centre (x, y)
  detection = face_at(detections, centre)                 the detection whose box holds it, or None
  counts = round_trip(recognizer, faces (N, 48, 48, 1), labels (N,), seed)

Used by benchmarks/bench_roundtrip.py (the figures), tools/photo_framed_cache.py (a
training cache of faces framed as the photo path frames them) and the tests.
"""
import sys

import cv2
import numpy as np
from tqdm import tqdm

from ferkit.dataset import EMOTIONS
from ferkit.faces import face_to_48

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
