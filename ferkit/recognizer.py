"""The Python API: photos in, faces with emotions out.  predict.py is a command-line layer over it.

    from ferkit import Recognizer
    recognizer = Recognizer()                      # the shipped default model (DEFAULT_MODEL), YuNet detector
    for face in recognizer.recognize("photo.jpg"):
        print(face["box"], face["emotion"], face["probabilities"][face["emotion"]])

recognize(image) takes a file path, or a NumPy image: BGR as OpenCV gives it,
RGB with rgb=True, or gray; 8 or 16 bits.  Each face is a dict

    {"box": [x, y, w, h], "score": float or None, "landmarks": [[x, y] * 5] or None,
     "emotion": name, "probabilities": {emotion: p, ... all 7 in EMOTIONS order}}

largest face first, in the image's pixels (for a file: the upright image,
EXIF orientation applied).  The landmarks are the right eye, left eye, nose
tip and right and left mouth corners; Haar gives neither landmarks nor a score.

video(path) does the same for every frame of a video, with the faces tracked (ferkit.video).
"""
import os

import cv2
import numpy as np

from ferkit import backends
from ferkit.backends import DEFAULT_MODEL
from ferkit.detectors import MIN_SCORE, make_detector
from ferkit.dataset import EMOTIONS, IMAGE_SIZE
from ferkit.faces import crop_face, face_to_48
from ferkit.photos import PhotoError, as_bgr, decode_image, image_kind, read_image


def locate(detector, bgr, largest=False, detections=None):
    """The one way a photo becomes model inputs (predict, the service, annotate, video, collections):
    uint8 BGR (H, W, 3) -> (detections, or [None] for the whole image where detector is None; their
    aligned 48x48 faces uint8 (N, 48, 48, 1)).  detections: what detector.detect(bgr) already gave."""
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    if detector is None:
        detections, crops = [None], [face_to_48(gray)]
    else:
        detections = (detector.detect(bgr) if detections is None else detections)[:1 if largest else None]
        crops = [crop_face(gray, d.box, d.landmarks) for d in detections]
    inputs = np.stack(crops)[..., None] if crops else np.zeros((0, IMAGE_SIZE, IMAGE_SIZE, 1), np.uint8)
    return detections, inputs


class Recognizer:
    """A trained model and a face detector.

    model: a shipped model's name: its exported ferkit/pretrained/NAME/model.tflite where it ships one
    (LiteRT, no TensorFlow), else the checkpoint folder ferkit/pretrained/NAME.
    checkpoint: a checkpoint folder written by train.py, or a .tflite file or SavedModel folder
    written by export.py (ferkit.backends.load).
    detector: "yunet" (default), "haar", or None to treat each whole image as one face.
    min_score: the YuNet score a face needs (ferkit.detectors.MIN_SCORE; Haar has no score).
    num_threads: LiteRT's threads for a .tflite model (default: every core).
    """

    def __init__(self, model=DEFAULT_MODEL, checkpoint=None, detector="yunet", bfloat16=False, min_score=MIN_SCORE,
                 num_threads=None):
        self.classifier = backends.load(backends.resolve(checkpoint, model), bfloat16=bfloat16, num_threads=num_threads)
        self.detector = make_detector(detector, min_score) if detector else None

    @property
    def name(self):
        return self.classifier.name

    def recognize(self, image, rgb=False, largest=False):
        """A path, an image file's bytes, a PIL image (read as RGB) or a NumPy image -> list of face dicts
        (see the module docstring), largest first.  PhotoError (a FerkitError) names what it was given."""
        is_bytes = isinstance(image, (bytes, bytearray, memoryview)) and image_kind(bytes(image[:16])) is not None
        is_path = not is_bytes and (isinstance(image, (str, bytes)) or hasattr(image, "__fspath__"))
        is_pil = hasattr(image, "getbands") and hasattr(image, "convert")
        what = ("the image bytes" if is_bytes else os.fsdecode(image) if is_path else
                "the PIL image" if is_pil else "the image array")
        try:
            if is_bytes:
                bgr = decode_image(bytes(image))
            elif is_path:
                bgr = read_image(image)
            elif is_pil:  # PIL's pixels are RGB(A), whatever rgb= says
                bgr = as_bgr(np.asarray(image.convert("RGB")), rgb=True)
            else:
                bgr = as_bgr(image, rgb)
        except (PhotoError, ValueError, OSError) as e:  # the same exception, naming what it was given
            raise PhotoError(f"{what}: {e}") from None
        return self.analyse(bgr, largest=largest)[0]

    def analyse(self, bgr, largest=False, attention=False, detections=None, detect=True):
        """uint8 BGR (H, W, 3) -> (faces as dicts, the 48x48 inputs uint8 (N, 48, 48, 1),
        local attention (N, 36) if attention=True else None); one model run gives both.
        detections: what self.detector.detect(bgr) already returned, so it is not run twice.
        detect=False treats the whole image as one face, as a Recognizer without a detector does."""
        detections, inputs = self.locate(bgr, largest, detections, detect)
        weights = None
        if attention:
            probabilities, extra = self.classifier.predict(inputs, extra=("local_attention",))
            weights = extra["local_attention"]
        else:
            probabilities = self.classifier.predict(inputs)
        return self.describe(detections, probabilities, bgr.shape), inputs, weights

    def locate(self, bgr, largest=False, detections=None, detect=True):
        """The first half of analyse: uint8 BGR (H, W, 3) -> (detections, [None] for the whole image;
        their 48x48 model inputs uint8 (N, 48, 48, 1))."""
        return locate(self.detector if detect else None, bgr, largest, detections)

    @staticmethod
    def describe(detections, probabilities, shape):
        """The second half of analyse: detections, their probabilities (N, 7) and the image's shape ->
        the face dicts of the module docstring."""
        h, w = shape[:2]
        faces = []
        for d, p in zip(detections, probabilities):
            faces.append({
                "box": [0, 0, w, h] if d is None else list(d.box),
                "score": None if d is None or d.score is None else round(d.score, 4),
                "landmarks": None if d is None or d.landmarks is None else np.round(d.landmarks.astype(np.float64), 1).tolist(),
                "emotion": EMOTIONS[int(p.argmax())],
                "probabilities": {e: round(float(v), 4) for e, v in zip(EMOTIONS, p)},
            })
        return faces

    def video(self, path, every=1, smooth=None, largest=False, images=False):
        """A video file -> a ferkit.video.Video: iterate it for one record per classified frame
        ({"frame", "time_s", "faces"}, each face with its "track" id and "smoothed" probabilities).
        smooth: seconds (ferkit.video.SMOOTH by default, 0 for none); see ferkit.video."""
        from ferkit import video
        try:
            capture, fps, total = video.open_capture(path)
        except video.VideoError as e:
            raise video.VideoError(f"{os.fsdecode(path)}: {e}") from None
        return video.Video(self, capture, fps, total, every, video.SMOOTH if smooth is None else smooth, largest, images)

    def close(self):
        self.classifier.close()
