"""The one place that defines what a face is to the models.

  EMOTIONS         the 7 label names, in FER-2013 label order (0..6)
  IMAGE_SIZE       48: faces are IMAGE_SIZE x IMAGE_SIZE grayscale
  to_model_input   uint8 faces (N, 48, 48, 1) -> float32 model input, same shape
  face_to_48       any grayscale crop (H, W) uint8 -> (48, 48) uint8

Training, evaluation and prediction all go through these functions, so a
face is turned into numbers the same way everywhere.
"""
import cv2
import numpy as np

EMOTIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
NUM_CLASSES = len(EMOTIONS)
IMAGE_SIZE = 48
NUM_PIXELS = IMAGE_SIZE * IMAGE_SIZE
SPLITS = ("Training", "PublicTest", "PrivateTest")

# FER-2013's pixel mean and standard deviation are close to these round
# numbers (0.508 and 0.255 of full scale over Training); fixed constants keep
# the transform independent of whichever data set a checkpoint was trained on.
_MEAN = 0.5 * 255.0
_STD = 0.25 * 255.0


def to_model_input(faces):
    """uint8 faces (N, 48, 48, 1) in 0..255 -> float32 (N, 48, 48, 1), about zero-mean, unit-variance."""
    faces = np.asarray(faces)
    if faces.ndim != 4 or faces.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE, 1):
        raise ValueError(f"faces must have shape (N, {IMAGE_SIZE}, {IMAGE_SIZE}, 1), got {faces.shape}")
    return (faces.astype(np.float32) - _MEAN) / _STD


def face_to_48(gray):
    """Grayscale crop (H, W) uint8 of any size -> (48, 48) uint8.

    INTER_AREA when shrinking (averages pixels, no aliasing), bilinear when
    growing; FER-2013's own faces pass through unchanged.
    """
    gray = np.asarray(gray)
    if gray.ndim != 2:
        raise ValueError(f"face crop must be 2-D grayscale, got shape {gray.shape}")
    h, w = gray.shape
    if (h, w) == (IMAGE_SIZE, IMAGE_SIZE):
        return gray.astype(np.uint8, copy=False)
    shrink = h > IMAGE_SIZE or w > IMAGE_SIZE
    return cv2.resize(gray, (IMAGE_SIZE, IMAGE_SIZE),
                      interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def one_hot(labels):
    """int labels (N,) in 0..6 -> uint8 one-hot (N, 7)."""
    return np.eye(NUM_CLASSES, dtype=np.uint8)[np.asarray(labels, dtype=np.int64)]


def tta_views(faces, shift=3):
    """Test-time augmentation: uint8 faces (N, 48, 48, 1) -> (V, N, 48, 48, 1), V = 10 views.

    The face itself and 4 copies shifted by `shift` px diagonally (borders
    reflected), each also mirrored.  Average the model's probabilities over V.
    """
    faces = np.asarray(faces)
    padded = np.pad(faces, ((0, 0), (shift, shift), (shift, shift), (0, 0)), mode="reflect")
    size, s = IMAGE_SIZE, shift
    views = [faces] + [padded[:, y:y + size, x:x + size] for y, x in ((0, 0), (0, 2 * s), (2 * s, 0), (2 * s, 2 * s))]
    return np.stack(views + [v[:, :, ::-1] for v in views])
