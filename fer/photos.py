"""Photos in, face crops out: reading image files defensively and finding faces.

  gray = read_gray(path)                 any 8/16-bit gray, BGR or BGRA file -> uint8 (H, W); PhotoError if bad
  boxes = FaceDetector().detect(gray)    -> [(x, y, w, h), ...], largest first
  faces = crop_faces(gray, boxes)        -> uint8 (N, 48, 48, 1), via fer.faces.face_to_48
"""
import os

import cv2
import numpy as np

from fer.faces import IMAGE_SIZE, face_to_48

# We report unreadable images ourselves, in one line each; OpenCV's own decoder warnings would double them.
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm")
CASCADE = "haarcascade_frontalface_default.xml"
_MAGIC = {b"\xff\xd8\xff": "JPEG", b"\x89PNG": "PNG", b"BM": "BMP", b"RIFF": "WebP", b"II*\x00": "TIFF",
          b"MM\x00*": "TIFF", b"P5": "PGM", b"P6": "PPM"}


class PhotoError(Exception):
    """An image that cannot be used; the message says why in a few words."""


def read_gray(path):
    """Image file -> uint8 grayscale (H, W).

    Accepts 8- or 16-bit, one-channel, BGR or BGRA images (alpha is dropped,
    16 bits are scaled to 8).  Raises PhotoError for a missing, empty,
    unreadable, truncated, corrupt or non-image file.
    """
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise PhotoError(f"cannot read file ({e.strerror or e})") from None
    if not raw:
        raise PhotoError("empty file")
    kind = next((k for magic, k in _MAGIC.items() if raw.startswith(magic)), None)
    if kind is None:
        raise PhotoError("not an image file (no JPEG, PNG, BMP, WebP, TIFF or PNM signature)")
    # Decoders fill a truncated JPEG with grey and only warn; check the end markers ourselves.
    if kind == "JPEG" and not raw.rstrip(b"\x00").endswith(b"\xff\xd9"):
        raise PhotoError("truncated JPEG (no end-of-image marker); the file is incomplete")
    if kind == "PNG" and b"IEND" not in raw[-16:]:
        raise PhotoError("truncated PNG (no IEND chunk); the file is incomplete")
    image = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        raise PhotoError(f"corrupt {kind} image (the decoder could not read it)")
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        image = cv2.normalize(image, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        return image
    code = {3: cv2.COLOR_BGR2GRAY, 4: cv2.COLOR_BGRA2GRAY}.get(image.shape[2])
    if code is None:
        raise PhotoError(f"unsupported image with {image.shape[2]} channels")
    return cv2.cvtColor(image, code)


def list_images(paths):
    """Files and folders -> image paths: a folder contributes its image files, sorted; a file is kept as given."""
    out = []
    for p in paths:
        if os.path.isdir(p):
            out += sorted(os.path.join(p, f) for f in os.listdir(p) if f.lower().endswith(IMAGE_EXTENSIONS))
        else:
            out.append(p)
    return out


class FaceDetector:
    """OpenCV's bundled frontal-face Haar cascade, tuned for speed on a CPU.

    The cascade's window is 24 px, so the photo is searched at the scale that
    maps the smallest face worth classifying (min_face px; FER-2013's faces are
    48) onto that window, and at most max_side px wide: a 640x480 photo is
    searched at 384x288, about a third of the pixels. Boxes are scaled back to
    the original photo. Scale steps of 15% (not OpenCV's 10%) cost a few
    percent of box precision and save a quarter of the time (bench_predict.py).
    """

    WINDOW = 24

    def __init__(self, min_face=40, max_side=640, scale_factor=1.15, min_neighbors=5):
        self.cascade = cv2.CascadeClassifier(os.path.join(cv2.data.haarcascades, CASCADE))
        if self.cascade.empty():
            raise RuntimeError(f"cannot load {CASCADE} from {cv2.data.haarcascades}")
        self.min_face, self.max_side = min_face, max_side
        self.scale_factor, self.min_neighbors = scale_factor, min_neighbors

    def detect(self, gray):
        """uint8 (H, W) -> list of (x, y, w, h) ints in gray's pixels, largest first."""
        scale = min(1.0, self.WINDOW / self.min_face, self.max_side / max(gray.shape))
        small = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else gray
        found = self.cascade.detectMultiScale(small, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
                                              minSize=(self.WINDOW, self.WINDOW))
        boxes = [tuple(int(round(v / scale)) for v in box) for box in (found if len(found) else [])]
        return sorted(boxes, key=lambda b: b[2] * b[3], reverse=True)


def crop_faces(gray, boxes):
    """uint8 (H, W) and boxes [(x, y, w, h)] -> uint8 (N, 48, 48, 1)."""
    faces = [face_to_48(gray[y:y + h, x:x + w]) for x, y, w, h in boxes]
    return np.stack(faces)[..., None] if faces else np.zeros((0, IMAGE_SIZE, IMAGE_SIZE, 1), np.uint8)
