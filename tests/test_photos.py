"""Photos to faces: reading (EXIF orientation, NumPy images), folder listing, the detectors, alignment."""
import os
import struct

import cv2
import numpy as np
import pytest

from conftest import ROOT, load_tool
from ferkit.detectors import HaarDetector, YuNetDetector
from ferkit.dataset import IMAGE_SIZE
from ferkit.faces import TEMPLATE, crop_face, similarity_to_template, warp_to_48
from ferkit.photos import PhotoError, as_bgr, list_images, read_image

SAMPLE = os.path.join(ROOT, "samples", "astronaut.png")
# Where the astronaut's face is in the 512x512 sample (found by eye: forehead to chin, ear to ear).
FACE_REGION = (170, 60, 280, 175)  # x0, y0, x1, y1


def inside(point, region):
    x, y = point
    x0, y0, x1, y1 = region
    return x0 <= x <= x1 and y0 <= y <= y1


def with_exif_orientation(jpeg, orientation):
    """JPEG bytes -> the same JPEG with an APP1 Exif segment holding one Orientation tag (0x0112)."""
    tiff = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 1)
    tiff += struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack("<I", 0)
    payload = b"Exif\x00\x00" + tiff
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


# How each orientation is stored: the upright image transformed by the inverse of what the tag says to do.
STORED = {3: lambda im: cv2.rotate(im, cv2.ROTATE_180),
          6: lambda im: cv2.rotate(im, cv2.ROTATE_90_COUNTERCLOCKWISE),
          8: lambda im: cv2.rotate(im, cv2.ROTATE_90_CLOCKWISE)}


def exif_photo(path, orientation):
    """Write the sample, stored sideways or upside down, with the EXIF tag that turns it upright."""
    stored = STORED[orientation](cv2.imread(SAMPLE))
    path.write_bytes(with_exif_orientation(cv2.imencode(".jpg", stored)[1].tobytes(), orientation))
    return path


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_gives_the_upright_image(tmp_path, orientation):
    upright = cv2.imread(SAMPLE)
    image = read_image(exif_photo(tmp_path / f"o{orientation}.jpg", orientation))
    assert image.shape == upright.shape
    assert np.abs(image.astype(int) - upright).mean() < 4  # JPEG noise only
    face, = YuNetDetector().detect(image)
    x, y, w, h = face.box
    assert inside((x + w / 2, y + h / 2), FACE_REGION)


def test_numpy_images_of_every_layout():
    bgr = cv2.imread(SAMPLE)
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    np.testing.assert_array_equal(as_bgr(rgb, rgb=True), bgr)
    np.testing.assert_array_equal(as_bgr(bgr), bgr)
    np.testing.assert_array_equal(as_bgr(cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA)), bgr)
    np.testing.assert_array_equal(as_bgr(bgr.astype(np.uint16) * 257), bgr)
    assert as_bgr(gray).shape == bgr.shape and as_bgr(gray[..., None]).shape == bgr.shape
    for bad in (np.zeros((0, 5)), np.zeros((4, 4, 2)), np.zeros(7)):
        with pytest.raises(PhotoError, match="not an image array"):
            as_bgr(bad)


def test_folders_walked_recursively_sorted_hidden_skipped(tmp_path):
    for rel in ("b/x.png", "a/x.png", "a/deeper/y.jpg", ".hidden/z.png", "a/.secret.png", "a/notes.txt", "top.png"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    items = list_images([tmp_path])
    assert [name for _, name in items] == ["a/deeper/y.jpg", "a/x.png", "b/x.png", "top.png"]
    assert all(os.path.exists(path) for path, _ in items)
    # Files given one by one are named relative to their common folder: same file names stay apart.
    items = list_images([tmp_path / "a" / "x.png", tmp_path / "b" / "x.png"])
    assert [name for _, name in items] == ["a/x.png", "b/x.png"]


def test_yunet_finds_the_sample_face_with_landmarks_inside_its_box():
    face, = YuNetDetector().detect(cv2.imread(SAMPLE))
    x, y, w, h = face.box
    assert inside((x + w / 2, y + h / 2), FACE_REGION) and 0.6 <= face.score <= 1
    assert face.landmarks.shape == (5, 2)
    for point in face.landmarks:
        assert inside(point, (x, y, x + w, y + h))
    right_eye, left_eye, nose, mouth_r, mouth_l = face.landmarks
    assert right_eye[0] < nose[0] < left_eye[0] and max(right_eye[1], left_eye[1]) < nose[1] < min(mouth_r[1], mouth_l[1])


def test_small_photos_give_the_same_answer_every_time_and_small_faces_are_found():
    import warnings
    x, y, x1, y1 = FACE_REGION
    face = cv2.imread(SAMPLE)[max(0, y - 40):y1 + 40, max(0, x - 40):x1 + 40]
    small_face = cv2.resize(face, (60, int(60 * face.shape[0] / face.shape[1])), interpolation=cv2.INTER_AREA)
    photos = [np.full((h, w, 3), 128, np.uint8) for h, w in ((20, 2000), (16, 16), (30, 500), (63, 63))] + [small_face]
    detector = YuNetDetector()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # YuNet's NaN boxes on small inputs showed as RuntimeWarnings
        answers = []
        for _ in range(5):
            for photo in photos:  # interleaved sizes: the network is re-planned between photos
                answers.append([(d.box, round(d.score, 5)) for d in detector.detect(photo)])
    per_photo = [answers[i::len(photos)] for i in range(len(photos))]
    assert all(len({repr(a) for a in runs}) == 1 for runs in per_photo)
    assert all(runs[0] == [] for runs in per_photo[:4])
    assert len(per_photo[4][0]) == 1  # a 60 px wide face photo is padded, not refused


def test_min_score_is_the_detectors_threshold():
    from ferkit import Recognizer
    face, = YuNetDetector().detect(cv2.imread(SAMPLE))
    assert len(Recognizer(min_score=face.score - 0.01).recognize(SAMPLE)) == 1
    assert Recognizer(min_score=min(1.0, face.score + 0.01)).recognize(SAMPLE) == []


def test_no_face_in_a_gradient_and_haar_still_works():
    gradient = cv2.cvtColor(np.tile(np.linspace(0, 255, 640, dtype=np.uint8), (480, 1)), cv2.COLOR_GRAY2BGR)
    assert YuNetDetector().detect(gradient) == []
    face, = HaarDetector().detect(cv2.imread(SAMPLE))
    assert face.landmarks is None and face.score is None


def test_face_check_in_numpy_is_the_training_networks_arithmetic():
    """FaceCheck runs in numpy what tools/train_face_check.py trains in TensorFlow: same probabilities."""
    tf = pytest.importorskip("tensorflow")
    network = load_tool("tools/train_face_check.py").network
    from ferkit.detectors import FaceCheck
    rng = np.random.default_rng(0)
    shapes = {"c1": (3, 3, 1, 16), "c2": (3, 3, 16, 32), "c3": (3, 3, 32, 64), "d": (65, 1),
              "b1": (16,), "b2": (32,), "b3": (64,), "db": (1,)}
    weights = {k: rng.normal(0, 0.3, v).astype(np.float32) for k, v in shapes.items()}
    check = FaceCheck.__new__(FaceCheck)
    check.weights, check.threshold = weights, 0.5
    crops, scores = rng.integers(0, 256, (5, 48, 48), dtype=np.uint8), rng.uniform(0.5, 0.8, 5).astype(np.float32)
    # In a graph of its own: another test in this process may have turned eager execution off (the models'
    # compat.v1 graphs do), and a session runs it either way.
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        expected = session.run(tf.sigmoid(network({k: tf.constant(v) for k, v in weights.items()},
                                                  crops[..., None].astype(np.float32) / 255.0, scores)))
    assert np.allclose(check.probability(crops, scores), expected, atol=1e-5)


def test_the_second_look_drops_unsure_detections_that_are_not_faces_and_keeps_sure_ones():
    """The shipped FaceCheck on the sample photo: its face passes at any score; the same box on a
    flat grey picture fails when YuNet is unsure of it and stays when it is sure (no second look)."""
    from ferkit.detectors import Detection
    detector = YuNetDetector()
    photo = cv2.imread(os.path.join(ROOT, "samples", "astronaut.png"))
    face = YuNetDetector(check=False).detect(photo)[0]
    assert detector.detect(photo)[0].box == face.box
    unsure = Detection(face.box, face.landmarks, 0.55)
    assert [d is unsure for d in detector.checked(photo, [unsure])] == [True]
    grey = np.full_like(photo, 128)
    assert detector.checked(grey, [unsure]) == []
    assert 0.5 < detector.check.sure <= 1 and 0 < detector.check.threshold < 1  # the asset's chosen pair
    sure = Detection(face.box, face.landmarks, detector.check.sure)
    assert [d is sure for d in detector.checked(grey, [sure])] == [True]


def test_template_maps_onto_itself_and_levels_a_rotated_face():
    np.testing.assert_allclose(similarity_to_template(TEMPLATE["landmarks"]), [[1, 0, 0], [0, 1, 0]], atol=1e-9)
    eyes = TEMPLATE["landmarks"][:2]
    assert eyes[0][1] == eyes[1][1]  # the template's eyes are level
    # The template's landmarks turned by 25 degrees, scaled 4x and moved: the fit undoes all three.
    angle = np.radians(25)
    turn = 4 * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    photo_points = TEMPLATE["landmarks"] @ turn.T + [300, 120]
    matrix = similarity_to_template(photo_points)
    np.testing.assert_allclose(photo_points @ matrix[:, :2].T + matrix[:, 2], TEMPLATE["landmarks"], atol=1e-6)


def test_detected_landmarks_are_levelled():
    """Whatever tilt YuNet reports for a turned photo (it follows a tilt only partly), the aligned eyes are level."""
    turned = cv2.warpAffine(cv2.imread(SAMPLE), cv2.getRotationMatrix2D((256, 256), 20, 1.0), (512, 512),
                            borderMode=cv2.BORDER_REFLECT)
    face, = YuNetDetector().detect(turned)
    matrix = similarity_to_template(face.landmarks)
    mapped = face.landmarks @ matrix[:, :2].T + matrix[:, 2]
    assert abs(mapped[0][1] - mapped[1][1]) < 1e-6
    assert np.abs(mapped - TEMPLATE["landmarks"]).max() < 4  # the face fills the template
    aligned = crop_face(cv2.cvtColor(turned, cv2.COLOR_BGR2GRAY), face.box, face.landmarks)
    assert aligned.shape == (IMAGE_SIZE, IMAGE_SIZE) and aligned.dtype == np.uint8


def test_large_faces_shrink_by_area_averaging_without_aliasing():
    stripes = np.zeros((IMAGE_SIZE * 4, IMAGE_SIZE * 4), np.uint8)
    stripes[:, ::2] = 255  # one-pixel stripes: any point sampling aliases them
    shrunk = warp_to_48(stripes, [[0.25, 0, -0.375], [0, 0.25, -0.375]])
    assert shrunk.shape == (IMAGE_SIZE, IMAGE_SIZE) and abs(shrunk.astype(float).mean() - 127.5) < 2 and shrunk.std() < 2
    face = np.random.default_rng(0).integers(0, 256, (IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    np.testing.assert_array_equal(warp_to_48(face, [[1, 0, 0], [0, 1, 0]]), face)
    big = cv2.resize(face, None, fx=4, fy=4, interpolation=cv2.INTER_NEAREST)
    np.testing.assert_array_equal(warp_to_48(big, [[0.25, 0, -0.375], [0, 0.25, -0.375]]), face)


def test_jpeg_with_data_after_its_end_is_read_and_damaged_middle_is_an_error(tmp_path):
    jpeg = cv2.imencode(".jpg", cv2.imread(SAMPLE))[1].tobytes()
    (tmp_path / "motion.jpg").write_bytes(jpeg + b"MotionPhoto_Data" + bytes(3000))  # as phones append video
    assert read_image(tmp_path / "motion.jpg").shape == (512, 512, 3)
    damaged = bytearray(jpeg)
    damaged[len(jpeg) // 2:len(jpeg) // 2 + 300] = b"\xab" * 300
    (tmp_path / "damaged.jpg").write_bytes(bytes(damaged))
    with pytest.raises(PhotoError, match="corrupt JPEG image"):
        read_image(tmp_path / "damaged.jpg")
    (tmp_path / "cut.jpg").write_bytes(with_exif_orientation(jpeg, 6)[:len(jpeg) // 2])  # a thumbnail-like early end
    with pytest.raises(PhotoError, match="truncated JPEG"):
        read_image(tmp_path / "cut.jpg")


def test_api_errors_name_their_input_and_can_be_caught(tmp_path):
    import ferkit
    from ferkit.recognizer import Recognizer
    recognizer = Recognizer(detector=None)
    cases = [(str(tmp_path / "missing.jpg"), f"{tmp_path / 'missing.jpg'}: cannot read file"),
             (np.full((48, 48), np.nan, np.float32), "the image array: the image array holds NaN"),
             (np.array([["a", "b"], ["c", "d"]]), "the image array: not a numeric image array (dtype <U1)"),
             (np.empty((4, 4), object), "not a numeric image array (dtype object)")]
    for image, phrase in cases:
        with pytest.raises(ferkit.PhotoError) as caught:
            recognizer.recognize(image)
        assert phrase in str(caught.value)
    faces = recognizer.recognize(np.random.default_rng(0).random((48, 48), np.float32))  # finite floats still work
    assert len(faces) == 1


def test_a_folder_that_cannot_be_listed_is_an_error_not_skipped(tmp_path, monkeypatch):
    """chmod 000 does not stop root (CI runs as root), so listing is made to fail as it does for others."""
    from ferkit.cli import UserError
    from ferkit.data import DataError, load
    (tmp_path / "photos" / "locked").mkdir(parents=True)
    (tmp_path / "fer" / "train" / "happy").mkdir(parents=True)
    real_scandir, real_listdir = os.scandir, os.listdir

    def refuse(path="."):
        if os.path.basename(os.fspath(path)) in ("locked", "happy"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return None
    monkeypatch.setattr(os, "scandir", lambda path=".": refuse(path) or real_scandir(path))
    monkeypatch.setattr(os, "listdir", lambda path=".": refuse(path) or real_listdir(path))
    with pytest.raises(UserError, match="locked: cannot list the folder \\(Permission denied\\)"):
        list_images([tmp_path / "photos"])
    with pytest.raises(DataError, match="happy: cannot list the folder \\(Permission denied\\)"):
        load(tmp_path / "fer")
