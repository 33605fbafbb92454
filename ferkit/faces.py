"""The one place that defines what a face is to the models.

  to_model_input   uint8 faces (N, 48, 48, 1) -> float32 model input, same shape (normalise, checked)
  face_to_48       any grayscale crop (H, W) uint8 -> (48, 48) uint8
  TEMPLATE         where FER-2013's faces have their five landmarks, and where Haar's box falls, in 48x48
  crop_face        a photo's gray pixels and one detection -> (48, 48) uint8, framed like FER-2013
                   (aligned on the landmarks when the detector gives them, else the box mapped onto the template's)

Training, evaluation and prediction all go through these functions, so a
face is turned into numbers the same way everywhere.
"""
import json
import os

import cv2
import numpy as np

from ferkit.dataset import IMAGE_SIZE, NUM_CLASSES, normalise


def to_model_input(faces):
    """uint8 faces (N, 48, 48, 1) in 0..255 -> float32 (N, 48, 48, 1), about zero-mean, unit-variance."""
    faces = np.asarray(faces)
    if faces.ndim != 4 or faces.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE, 1):
        raise ValueError(f"faces must have shape (N, {IMAGE_SIZE}, {IMAGE_SIZE}, 1), got {faces.shape}")
    return normalise(faces.astype(np.float32))


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


def _load_template():
    """ferkit/assets/fer2013_template.json, written by tools/derive_template.py."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "assets", "fer2013_template.json")
    with open(path) as f:
        template = json.load(f)
    return {"landmarks": np.array(template["landmarks"], np.float64), "haar_box": tuple(template["haar_box"])}


# FER-2013's framing, measured on its Training faces (README, "Faces in photos"):
#   landmarks (5, 2): right eye, left eye, nose tip, right and left mouth corners, (x, y) in 48x48 pixels,
#                     eyes and mouth corners levelled;  haar_box: (x, y, w, h) of Haar's box on such a face.
TEMPLATE = _load_template()


def similarity_to_template(landmarks):
    """Five landmarks (5, 2) in a photo -> 2x3 matrix mapping the photo onto the 48x48 template.

    The rotation levels the eyes (the template's are level); scale and shift are the
    least-squares fit of all five points given that rotation, so one badly placed
    landmark moves the face less than it would with the eyes alone.
    """
    src = np.asarray(landmarks, np.float64)
    dst = TEMPLATE["landmarks"]
    dx, dy = src[1] - src[0]
    angle = -np.arctan2(dy, dx)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    rotated = src @ rotation.T
    r0, d0 = rotated - rotated.mean(0), dst - dst.mean(0)
    scale = (r0 * d0).sum() / max((r0 ** 2).sum(), 1e-9)
    shift = dst.mean(0) - scale * rotated.mean(0)
    return np.hstack([scale * rotation, shift[:, None]])


def box_to_template(box):
    """A detector box (x, y, w, h) without landmarks -> 2x3 matrix mapping it onto the template's Haar box."""
    x, y, w, h = box
    tx, ty, tw, th = TEMPLATE["haar_box"]
    scale = (tw / w + th / h) / 2
    return np.array([[scale, 0, tx - scale * x], [0, scale, ty - scale * y]])


def warp_to_48(gray, matrix):
    """uint8 (H, W) and a 2x3 similarity matrix (photo -> 48x48) -> (48, 48) uint8.

    A face larger than 48 px is warped (bilinear) onto a k-times finer grid, k about its
    size / 48, and that grid is then shrunk by area averaging (cv2.INTER_AREA): the result
    neither aliases nor gets the extra blur of resampling at 48 px.  Pixels beyond the
    photo's border repeat the border.
    """
    matrix = np.asarray(matrix, np.float64)
    k = int(min(8, np.ceil(1 / np.sqrt(abs(np.linalg.det(matrix[:, :2]))) - 1e-6)))
    if k <= 1:
        return cv2.warpAffine(gray, matrix, (IMAGE_SIZE, IMAGE_SIZE), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE)
    # Pixel centres at integers: the fine grid's pixel u covers the 48-px point (u + 0.5) / k - 0.5.
    fine = np.hstack([k * matrix[:, :2], (k * matrix[:, 2] + (k - 1) / 2)[:, None]])
    big = cv2.warpAffine(gray, fine, (k * IMAGE_SIZE, k * IMAGE_SIZE), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE)
    return cv2.resize(big, (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_AREA)


def crop_face(gray, box, landmarks=None):
    """A photo's uint8 (H, W) pixels and one detection -> (48, 48) uint8 face, framed like FER-2013's.

    With landmarks (5, 2) the face is aligned onto TEMPLATE (similarity_to_template);
    a box alone is mapped onto the template's Haar box (box_to_template).
    """
    matrix = similarity_to_template(landmarks) if landmarks is not None else box_to_template(box)
    return warp_to_48(gray, matrix)
