"""Face detectors: a photo in, faces (box, five landmarks, score) out, largest first.

  detector = make_detector("yunet" | "haar")
  detections = detector.detect(bgr)      bgr uint8 (H, W, 3) -> [Detection, ...], largest first

YuNet (the default) is a small CNN detector from the OpenCV model zoo
(ferkit/assets/face_detection_yunet_2023mar.onnx, MIT licence beside it),
run by cv2.FaceDetectorYN: it finds small, tilted and partly turned faces
and gives five landmarks per face, which ferkit.faces.align_face uses to put
each face where FER-2013 has its faces.  A detection YuNet is not sure of
(score under FaceCheck's sure score) gets a second look (FaceCheck): the face aligned as
the model will see it, judged by a small CNN of our own.  Haar (`--detector haar`) is OpenCV's
bundled frontal-face cascade: boxes only.
"""
import os
from dataclasses import dataclass

import cv2
import numpy as np

ASSETS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "assets")
YUNET_MODEL = os.path.join(ASSETS, "face_detection_yunet_2023mar.onnx")
HAAR_CASCADE = "haarcascade_frontalface_default.xml"
DETECTORS = ("yunet", "haar")
# YuNet's score a face needs.  Measured (benchmarks/bench_false_faces.py: 3,589 PublicTest faces pasted
# into photos, 1,000 photos with no face): 0.5 finds 98.3% of the faces with 4.5 false faces per 100
# faceless photos; 0.6 97.5% and 2.4; 0.8 94.6% and 0.2.  0.5 keeps the photo path's goal of 98% found.
# With real faceless photographs (scikit-image's, --real), 0.5 gives 11.6 false faces per 100, 0.8 0.4.
# With FaceCheck's second look at the detections it is not sure of, far fewer (docs/photos.md).
MIN_SCORE = 0.5
FACE_CHECK = os.path.join(ASSETS, "face_check.npz")


@dataclass
class Detection:
    """One face in a photo's pixels.

    box: (x, y, w, h) ints; landmarks: float32 (5, 2), the face's right eye, left eye,
    nose tip, right and left mouth corners (x, y), or None (Haar); score: detector confidence or None.
    """
    box: tuple
    landmarks: np.ndarray = None
    score: float = None


def _search_scale(shape, min_face, window, max_side):
    """Scale at which to search a photo of `shape`: a min_face-pixel face becomes a
    window-pixel one, and the long side is at most max_side; never enlarged."""
    return min(1.0, window / min_face, max_side / max(shape[:2]))


def _shrink(image, scale):
    """image scaled by scale < 1 (area averaging), each side at least 1 px; image itself otherwise."""
    if scale >= 1:
        return image
    size = (max(1, int(round(image.shape[1] * scale))), max(1, int(round(image.shape[0] * scale))))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


class FaceCheck:
    """A second look at a detection: is the face, aligned onto FER-2013's framing as the model will
    see it, a face?  A small CNN (three 3x3 conv layers of 16, 32 and 64 filters, each with ReLU and
    2x2 max pooling, their mean, and YuNet's score as a logit beside it, into one logistic unit),
    run here in numpy: about 23,000 weights in ferkit/assets/face_check.npz, written by
    tools/train_face_check.py with the two numbers it chose on held-out photos: the probability a
    face needs (threshold), and YuNet's score from which a detection needs no look (sure).

        check = FaceCheck()
        probability = check.probability(crops uint8 (N, 48, 48), scores (N,))  -> float (N,)
        keep = check.passes(crops, scores)                                    -> bool (N,)
        kept = check.keep(bgr or gray, detections)                            -> [Detection]
    """
    SETTINGS = ("threshold", "sure")

    def __init__(self, path=FACE_CHECK):
        with np.load(path) as z:
            self.weights = {k: z[k].astype(np.float32) for k in z.files if k not in self.SETTINGS}
            self.threshold, self.sure = float(z["threshold"]), float(z["sure"])

    def probability(self, crops, scores):
        x = np.asarray(crops, np.float32)[..., None] / 255.0
        x = x - x.mean((1, 2, 3), keepdims=True)
        x = x / (x.std((1, 2, 3), keepdims=True) + 1e-3)
        for k in (1, 2, 3):
            x = _max_pool(np.maximum(_conv3x3(x, self.weights[f"c{k}"]) + self.weights[f"b{k}"], 0))
        scores = np.clip(np.asarray(scores, np.float32), 1e-4, 1 - 1e-4)
        features = np.concatenate([x.mean((1, 2)), np.log(scores / (1 - scores))[:, None]], 1)
        return 1 / (1 + np.exp(-(features @ self.weights["d"][:, 0] + self.weights["db"][0])))

    def passes(self, crops, scores):
        return self.probability(crops, scores) >= self.threshold

    def keep(self, image, found):
        """found (Detections in image, BGR or gray) less those under the sure score that fail the
        second look.  Only those are cropped: a sure face costs nothing more."""
        unsure = [d for d in found if d.score < self.sure]
        if not unsure:
            return found
        from ferkit.faces import crop_face
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
        crops = [crop_face(gray, d.box, d.landmarks) for d in unsure]
        failed = {id(d) for d, ok in zip(unsure, self.passes(crops, [d.score for d in unsure])) if not ok}
        return [d for d in found if id(d) not in failed]


def _conv3x3(x, kernel):
    """float (N, H, W, C) and (3, 3, C, O) -> (N, H, W, O): a 'same' convolution, as tf.nn.conv2d does it."""
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(1, 2))  # (N, H, W, C, 3, 3)
    n, h, w, c = x.shape
    columns = windows.transpose(0, 1, 2, 4, 5, 3).reshape(n * h * w, 9 * c)  # one matrix product (im2col)
    return (columns @ kernel.reshape(9 * c, -1)).reshape(n, h, w, -1)


def _max_pool(x):
    """(N, H, W, C) -> (N, H // 2, W // 2, C), 2x2 windows."""
    n, h, w, c = x.shape
    return x[:, :h // 2 * 2, :w // 2 * 2].reshape(n, h // 2, 2, w // 2, 2, c).max((2, 4))


class YuNetDetector:
    """cv2.FaceDetectorYN with YuNet (2023mar): a coarse, fast search first, a full one if it finds nothing.

    The first search runs at the scale that makes the smallest face worth
    classifying (min_face px) 16 px: a 640x480 photo with min_face=32 is searched
    at 320x240 (about 3 ms here instead of 9 ms at full size; bench_predict.py).
    When that finds no face, the photo is searched again at full size (long side
    at most max_side): blurred, dark or strongly turned faces are found there
    that the coarse search misses (bench_roundtrip.py).  Boxes and landmarks are
    in the photo's pixels.
    """

    WINDOW = 16
    NEAR_FACE = 64  # px: a face's size in detect_near's searches (YuNet finds such faces surely, and cheaply)
    # YuNet reads uninitialised memory on inputs with a side under about 64 px (its outputs then
    # vary from run to run, with NaN boxes): smaller searches are padded with black to this side.
    MIN_INPUT = 64

    def __init__(self, min_face=32, max_side=1280, score_threshold=MIN_SCORE, nms_threshold=0.3, check=True):
        for path in (YUNET_MODEL,) + ((FACE_CHECK,) if check else ()):
            if not os.path.exists(path):
                raise RuntimeError(f"{path} is missing; it ships with the project (git checkout -- ferkit/assets)")
        self.min_face, self.max_side = min_face, max_side
        self.check = FaceCheck() if check else None
        self.net = cv2.FaceDetectorYN.create(YUNET_MODEL, "", (320, 320), score_threshold, nms_threshold, 5000)
        self._size = (320, 320)

    def detect(self, bgr):
        """uint8 (H, W, 3) BGR -> [Detection], largest first, in bgr's pixels.  An image smaller than
        the network's window has no face it could find: [] (never an error for the photos after it)."""
        if min(bgr.shape[:2]) < self.WINDOW:
            return []
        coarse, full = self.scales(bgr.shape)
        found = self.checked(bgr, self._search(bgr, coarse))
        if not found and full is not None:
            found = self.checked(bgr, self._search(bgr, full))
        return sorted(found, key=lambda d: d.box[2] * d.box[3], reverse=True)

    def checked(self, bgr, found):
        """found less the detections FaceCheck does not keep (FaceCheck.keep); all of found without a check."""
        return found if self.check is None else self.check.keep(bgr, found)

    def detect_near(self, bgr, boxes):
        """Search only around faces seen a moment ago (ferkit.video, between full searches): for each
        box (x, y, w, h), the square twice its size around it, scaled so that the face is about
        NEAR_FACE px.  -> [Detection], largest first, in bgr's pixels; a face found twice (two
        squares overlap) once.  A face cut by a square's edge inside the frame is left out: it has
        moved too far for this search, and the caller's full search will find it whole."""
        height, width = bgr.shape[:2]
        found = []
        for x, y, w, h in boxes:
            side = 2 * max(w, h)
            x0, y0 = int(max(0, x + w / 2 - side / 2)), int(max(0, y + h / 2 - side / 2))
            x1, y1 = int(min(width, x + w / 2 + side / 2)), int(min(height, y + h / 2 + side / 2))
            if min(x1 - x0, y1 - y0) < self.WINDOW:
                continue
            for d in self._search(bgr[y0:y1, x0:x1], min(1.0, self.NEAR_FACE / max(w, h))):
                bx, by, bw, bh = d.box
                cut = ((bx <= 0 and x0 > 0) or (by <= 0 and y0 > 0) or
                       (bx + bw >= x1 - x0 and x1 < width) or (by + bh >= y1 - y0 and y1 < height))
                if not cut:
                    found.append(Detection((bx + x0, by + y0, bw, bh), d.landmarks + np.float32([x0, y0]), d.score))
        kept = []
        for d in sorted(found, key=lambda d: -d.score):
            if all(_overlap(d.box, k.box) <= 0.3 for k in kept):
                kept.append(d)
        return sorted(kept, key=lambda d: d.box[2] * d.box[3], reverse=True)

    def scales(self, shape):
        """(coarse, full): the scales of the first search and of the full-size one, None when the
        first search is already at full size (benchmarks/bench_false_faces.py runs both)."""
        coarse = _search_scale(shape, self.min_face, self.WINDOW, self.max_side)
        full = min(1.0, self.max_side / max(shape[:2]))
        return coarse, (full if full > coarse else None)

    def _search(self, bgr, scale):
        small = _shrink(bgr, scale)
        pad_y, pad_x = max(0, self.MIN_INPUT - small.shape[0]), max(0, self.MIN_INPUT - small.shape[1])
        if pad_y or pad_x:  # below and to the right: the image's own pixels keep their coordinates
            small = cv2.copyMakeBorder(small, 0, pad_y, 0, pad_x, cv2.BORDER_CONSTANT, value=0)
        size = (small.shape[1], small.shape[0])
        if size != self._size:  # setInputSize re-plans the network's priors; only when the size changes
            self.net.setInputSize(size)
            self._size = size
        _, rows = self.net.detect(small)
        found = []
        for row in (rows if rows is not None else ()):
            if not np.isfinite(row[:15]).all():
                continue
            x, y, w, h = row[:4] / scale
            x0, y0 = max(0.0, x), max(0.0, y)  # YuNet's boxes may reach past the border
            x1, y1 = min(float(bgr.shape[1]), x + w), min(float(bgr.shape[0]), y + h)
            if x1 - x0 < 1 or y1 - y0 < 1:
                continue
            box = (int(round(x0)), int(round(y0)), int(round(x1 - x0)), int(round(y1 - y0)))
            found.append(Detection(box, (row[4:14].reshape(5, 2) / scale).astype(np.float32), float(row[14])))
        return found


def _overlap(a, b):
    """Intersection over union of two boxes (x, y, w, h)."""
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / max(a[2] * a[3] + b[2] * b[3] - inter, 1)


class HaarDetector:
    """OpenCV's bundled frontal-face Haar cascade, tuned for speed on a CPU: boxes, no landmarks.

    The cascade's window is 24 px, so the photo is searched at the scale that
    maps the smallest face worth classifying (min_face px) onto that window,
    at most max_side px wide: a 640x480 photo is searched at 384x288. Scale
    steps of 15% (not OpenCV's 10%) cost a few percent of box precision and
    save a quarter of the time.
    """

    WINDOW = 24

    def __init__(self, min_face=40, max_side=640, scale_factor=1.15, min_neighbors=5):
        self.cascade = cv2.CascadeClassifier(os.path.join(cv2.data.haarcascades, HAAR_CASCADE))
        if self.cascade.empty():
            raise RuntimeError(f"cannot load {HAAR_CASCADE} from {cv2.data.haarcascades}")
        self.min_face, self.max_side = min_face, max_side
        self.scale_factor, self.min_neighbors = scale_factor, min_neighbors

    def detect(self, bgr):
        """uint8 (H, W, 3) BGR or (H, W) gray -> [Detection] (landmarks and score None), largest first."""
        gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY) if bgr.ndim == 3 else bgr
        scale = _search_scale(gray.shape, self.min_face, self.WINDOW, self.max_side)
        found = self.cascade.detectMultiScale(_shrink(gray, scale), scaleFactor=self.scale_factor,
                                              minNeighbors=self.min_neighbors, minSize=(self.WINDOW, self.WINDOW))
        boxes = [tuple(int(round(v / scale)) for v in box) for box in (found if len(found) else [])]
        return [Detection(b) for b in sorted(boxes, key=lambda b: b[2] * b[3], reverse=True)]


def make_detector(name, min_score=MIN_SCORE):
    """'yunet' or 'haar' -> a detector with .detect(bgr); min_score: YuNet's threshold (Haar has no score)."""
    if name == "yunet":
        return YuNetDetector(score_threshold=min_score)
    if name == "haar":
        return HaarDetector()
    raise ValueError(f"unknown detector {name!r}; choose one of {', '.join(DETECTORS)}")
