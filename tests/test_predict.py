"""predict.py on real photos: the bundled sample, no face, several faces, bad files, JSON, drawings, parity.

The tests run the tiny model's .tflite export (tiny_tflite: LiteRT, no TensorFlow, as predict runs the
shipped models); the parity test runs its checkpoint, which the export matches (tests/test_export.py)."""
import json
import os

import cv2
import numpy as np
import pytest

from conftest import ROOT, run_script
from ferkit import checkpoints, data
from ferkit.dataset import EMOTIONS

SAMPLE = os.path.join(ROOT, "samples", "astronaut.png")
# Where the astronaut's face is in the 512x512 sample (found by eye: forehead to chin, ear to ear).
FACE_REGION = (170, 60, 280, 175)  # x0, y0, x1, y1


def predict(checkpoint, *args, check=None):
    proc = run_script("predict.py", *args, "--checkpoint", checkpoint, "--json", check=check)
    return proc, json.loads(proc.stdout)


def centre_in_face(box, scale=1.0, dx=0):
    x, y, w, h = box
    cx, cy = x + w / 2, y + h / 2
    x0, y0, x1, y1 = FACE_REGION
    return x0 * scale + dx <= cx <= x1 * scale + dx and y0 * scale <= cy <= y1 * scale


def check_entry_shape(entry):
    assert set(entry) == {"path", "faces", "error"}
    for face in entry["faces"]:
        assert set(face) == {"box", "score", "landmarks", "emotion", "probabilities"}
        assert len(face["box"]) == 4 and all(isinstance(v, int) for v in face["box"])
        assert face["landmarks"] is None or (len(face["landmarks"]) == 5 and all(len(p) == 2 for p in face["landmarks"]))
        assert face["score"] is None or 0 < face["score"] <= 1
        assert face["emotion"] in EMOTIONS and list(face["probabilities"]) == list(EMOTIONS)
        assert sum(face["probabilities"].values()) == pytest.approx(1.0, abs=1e-3)
        assert face["emotion"] == max(face["probabilities"], key=face["probabilities"].get)


def test_bundled_photo_face_found_where_it_is(tiny_tflite):
    _, result = predict(tiny_tflite, SAMPLE, check=0)
    assert len(result) == 1 and result[0]["error"] is None
    check_entry_shape(result[0])
    assert len(result[0]["faces"]) == 1 and centre_in_face(result[0]["faces"][0]["box"])


def test_readable_default_output(tiny_tflite):
    proc = run_script("predict.py", SAMPLE, "--checkpoint", tiny_tflite, check=0)
    line, = proc.stdout.strip().splitlines()
    assert line.startswith(f"{SAMPLE}: face at (") and line.split()[-2] in EMOTIONS


def test_photo_without_a_face(tiny_tflite, tmp_path):
    gradient = np.tile(np.linspace(0, 255, 640, dtype=np.uint8), (480, 1))
    cv2.imwrite(str(tmp_path / "wall.png"), gradient)
    _, result = predict(tiny_tflite, tmp_path / "wall.png", check=0)
    assert result == [{"path": str(tmp_path / "wall.png"), "faces": [], "error": None}]


def test_several_faces_largest_first(tiny_tflite, tmp_path):
    photo = cv2.imread(SAMPLE)
    small = cv2.resize(photo, None, fx=0.75, fy=0.75, interpolation=cv2.INTER_AREA)
    group = np.zeros((512, 512 + small.shape[1], 3), np.uint8)
    group[:, :512], group[:small.shape[0], 512:] = photo, small
    cv2.imwrite(str(tmp_path / "two.jpg"), group)
    _, result = predict(tiny_tflite, tmp_path / "two.jpg", check=0)
    faces = result[0]["faces"]
    assert len(faces) == 2
    assert faces[0]["box"][2] > faces[1]["box"][2]  # largest first
    assert centre_in_face(faces[0]["box"]) and centre_in_face(faces[1]["box"], 0.75, 512)
    _, result = predict(tiny_tflite, tmp_path / "two.jpg", "--largest", check=0)
    assert [f["box"] for f in result[0]["faces"]] == [faces[0]["box"]]


def test_alpha_16_bit_and_one_channel_images_work(tiny_tflite, tmp_path):
    photo = cv2.imread(SAMPLE)
    gray = cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY)
    cv2.imwrite(str(tmp_path / "a_alpha.png"), cv2.cvtColor(photo, cv2.COLOR_BGR2BGRA))
    cv2.imwrite(str(tmp_path / "b_16bit.png"), photo.astype(np.uint16) * 257)
    cv2.imwrite(str(tmp_path / "c_gray.png"), gray)
    _, result = predict(tiny_tflite, tmp_path, check=0)  # a folder of them
    assert [os.path.basename(e["path"]) for e in result] == ["a_alpha.png", "b_16bit.png", "c_gray.png"]
    for entry in result:
        assert entry["error"] is None and len(entry["faces"]) == 1 and centre_in_face(entry["faces"][0]["box"])


def test_bad_files_reported_and_others_processed(tiny_tflite, tmp_path):
    encoded = cv2.imencode(".jpg", cv2.imread(SAMPLE))[1].tobytes()
    png = cv2.imencode(".png", cv2.imread(SAMPLE))[1].tobytes()
    bad = {
        "missing.jpg": None,
        "empty.jpg": b"",
        "truncated.jpg": encoded[:len(encoded) // 2],
        "notes.png": b"these are not pixels\n",
        "corrupt.png": png[:100] + bytes(1000) + png[-12:],
    }
    for name, content in bad.items():
        if content is not None:
            (tmp_path / name).write_bytes(content)
    paths = [tmp_path / n for n in bad] + [SAMPLE]
    proc, result = predict(tiny_tflite, *paths)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    errors = {os.path.basename(e["path"]): e["error"] for e in result}
    assert "No such file" in errors["missing.jpg"] and errors["empty.jpg"] == "empty file"
    assert "truncated JPEG" in errors["truncated.jpg"] and "not an image file" in errors["notes.png"]
    assert "corrupt PNG" in errors["corrupt.png"]
    assert errors["astronaut.png"] is None and len(result[-1]["faces"]) == 1
    stderr = proc.stderr.strip().splitlines()
    assert len(stderr) == len(bad) and all(line.startswith("error: ") for line in stderr)
    for entry in result:
        check_entry_shape(entry)


def test_annotate_and_explain_write_images(tiny_tflite, tmp_path):
    run_script("predict.py", SAMPLE, "--checkpoint", tiny_tflite, "--annotate", tmp_path / "ann",
               "--explain", tmp_path / "exp", check=0)
    drawn = cv2.imread(str(tmp_path / "ann" / "astronaut.png"))
    assert drawn.shape == (512, 512, 3) and not np.array_equal(drawn, cv2.imread(SAMPLE))
    heat = cv2.imread(str(tmp_path / "exp" / "astronaut_face1_attention.png"))
    assert sorted(os.listdir(tmp_path / "ann")) == ["astronaut.png"]
    assert heat.shape == (192, 384, 3)


def test_prediction_and_evaluation_see_the_same_input(tiny_checkpoint, synthetic_cache, tmp_path):
    """A face saved as an image and read by predict --no-detect gets the probabilities the
    evaluation path (cache -> Classifier) gives the same face: one transform for both."""
    images, _ = data.load_cache(synthetic_cache)["PrivateTest"]
    for i, face in enumerate(images[:5]):
        cv2.imwrite(str(tmp_path / f"face{i}.png"), face[:, :, 0])
    _, result = predict(tiny_checkpoint, tmp_path, "--no-detect", check=0)
    expected = checkpoints.Classifier(str(tiny_checkpoint)).predict(images[:5])
    for entry, probabilities in zip(result, expected):
        face, = entry["faces"]
        assert face["box"] == [0, 0, 48, 48] and face["landmarks"] is None and face["score"] is None
        np.testing.assert_allclose(list(face["probabilities"].values()), probabilities, atol=1e-4)


def test_bad_arguments(tiny_tflite, tmp_path):
    proc = run_script("predict.py", "--checkpoint", tiny_tflite)
    assert proc.returncode == 2 and "give at least one image" in proc.stderr
    proc = run_script("predict.py", SAMPLE, "--checkpoint", tmp_path)
    assert proc.returncode == 2 and "not a checkpoint folder" in proc.stderr and "Traceback" not in proc.stderr


def test_haar_detector_still_available(tiny_tflite):
    _, result = predict(tiny_tflite, SAMPLE, "--detector", "haar", check=0)
    face, = result[0]["faces"]
    assert centre_in_face(face["box"]) and face["landmarks"] is None and face["score"] is None


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_rotated_photo_boxes_in_upright_coordinates(tiny_tflite, tmp_path, orientation):
    from test_photos import exif_photo
    _, result = predict(tiny_tflite, exif_photo(tmp_path / "phone.jpg", orientation), check=0)
    face, = result[0]["faces"]
    assert centre_in_face(face["box"])


def test_annotate_mirrors_the_input_tree_without_collisions(tiny_tflite, tmp_path):
    photo = cv2.imread(SAMPLE)
    for rel in ("happy/a.jpg", "happy/a.png", "sad/a.jpg", "sad/deep/b.png", ".hidden/c.png"):
        (tmp_path / "in" / rel).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(tmp_path / "in" / rel), photo)
    _, result = predict(tiny_tflite, tmp_path / "in", "--annotate", tmp_path / "out", check=0)
    assert [os.path.relpath(e["path"], tmp_path / "in") for e in result] == \
        ["happy/a.jpg", "happy/a.png", "sad/a.jpg", "sad/deep/b.png"]
    written = sorted(os.path.relpath(os.path.join(d, f), tmp_path / "out")
                     for d, _, files in os.walk(tmp_path / "out") for f in files)
    assert written == ["happy/a.jpg.png", "happy/a.png.png", "sad/a.png", "sad/deep/b.png"]
    # Two files of the same name from different folders, given one by one.
    run_script("predict.py", tmp_path / "in" / "happy" / "a.jpg", tmp_path / "in" / "sad" / "a.jpg",
               "--checkpoint", tiny_tflite, "--annotate", tmp_path / "out2", check=0)
    assert sorted(os.listdir(tmp_path / "out2")) == ["happy", "sad"]


def test_labels_of_neighbouring_faces_do_not_overlap():
    from ferkit.commands.predict import draw
    faces = [{"box": [100 + 60 * i, 100, 50, 50], "emotion": "happy", "landmarks": None,
              "probabilities": {"happy": 0.9}} for i in range(4)]
    image = np.zeros((400, 400, 3), np.uint8)
    draw(image, faces)
    # Each label is a filled green rectangle; count the green label pixels per row band above/below boxes.
    green = (image[:, :, 1] == 200) & (image[:, :, 0] == 0)
    labels = cv2.connectedComponentsWithStats(green.astype(np.uint8))[2][1:]
    filled = [s for s in labels if s[4] > 0.5 * s[2] * s[3] and s[3] > 8]  # solid rectangles, not box outlines
    rects = [(x, y, x + w, y + h) for x, y, w, h, _ in filled]
    assert len(rects) >= 4
    for i, a in enumerate(rects):
        for b in rects[i + 1:]:
            assert not (a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]), (a, b)


def test_api_gives_the_same_faces_as_the_cli(tiny_tflite):
    from ferkit import Recognizer
    _, result = predict(tiny_tflite, SAMPLE, check=0)
    recognizer = Recognizer(checkpoint=str(tiny_tflite))
    assert recognizer.recognize(SAMPLE) == result[0]["faces"]
    bgr = cv2.imread(SAMPLE)
    assert recognizer.recognize(bgr) == result[0]["faces"]
    assert recognizer.recognize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), rgb=True) == result[0]["faces"]


def test_video_to_csv_one_row_per_face_per_frame(tiny_tflite, tmp_path):
    photo = cv2.resize(cv2.imread(SAMPLE), (320, 320), interpolation=cv2.INTER_AREA)
    video = str(tmp_path / "clip.avi")
    writer = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*"MJPG"), 10, (640, 320))
    for k in range(7):  # the face moves right; frame 3 has no face
        frame = np.full((320, 640, 3), 60, np.uint8)
        if k != 3:
            frame[:, 40 * k:40 * k + 320] = photo
        writer.write(frame)
    writer.release()
    out = tmp_path / "emotions.csv"
    proc = run_script("predict.py", "--video", video, "--checkpoint", tiny_tflite, "--csv", out,
                      "--every", 2, "--annotate", tmp_path / "ann", check=0)
    rows = out.read_text().splitlines()
    assert rows[0] == ("frame,time_s,track,face,x,y,w,h,score,emotion," + ",".join(EMOTIONS) + ",smoothed_emotion,"
                       + ",".join(f"smoothed_{e}" for e in EMOTIONS))
    frames = [r.split(",") for r in rows[1:]]
    assert [int(r[0]) for r in frames] == [0, 2, 4, 6]  # every 2nd frame, 0..6, each with its one face
    assert [float(r[1]) for r in frames] == [0.0, 0.2, 0.4, 0.6]
    for r in frames:  # one person, one track
        assert r[2] == "1" and r[3] == "1" and r[9] in EMOTIONS and abs(sum(map(float, r[10:17])) - 1) < 1e-3
        assert r[17] in EMOTIONS and abs(sum(map(float, r[18:25])) - 1) < 1e-3
    assert os.path.getsize(tmp_path / "ann" / "annotated.mp4") > 0
    assert sorted(os.listdir(tmp_path)) == ["ann", "clip.avi", "emotions.csv", "emotions.summary.json",
                                            "emotions.timeline.png"]
    assert "7 frames read, 4 classified, 1 people tracked" in proc.stderr


def test_stream_arguments_checked_before_anything_runs(tiny_tflite, tmp_path):
    proc = run_script("predict.py", SAMPLE, "--video", "clip.mp4", "--checkpoint", tiny_tflite)
    assert proc.returncode == 2 and "cannot be combined with --video" in proc.stderr
    proc = run_script("predict.py", "--camera", 57, "--checkpoint", tiny_tflite)
    assert proc.returncode == 2 and "cannot open camera 57" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    (tmp_path / "notes.txt").write_text("not a video\n")
    proc = run_script("predict.py", "--video", tmp_path / "notes.txt", "--checkpoint", tiny_tflite)
    assert proc.returncode == 2 and "cannot read it as a video" in proc.stderr
    proc = run_script("predict.py", SAMPLE, "--csv", tmp_path / "x.csv", "--checkpoint", tiny_tflite)
    assert proc.returncode == 2 and "apply to --video and --camera only" in proc.stderr


def test_output_folder_that_cannot_be_written(tiny_tflite, tmp_path):
    (tmp_path / "a_file").write_text("")
    proc = run_script("predict.py", SAMPLE, "--checkpoint", tiny_tflite, "--annotate", tmp_path / "a_file")
    assert proc.returncode == 2 and "is a file, not a folder" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_script("predict.py", SAMPLE, "--checkpoint", tiny_tflite, "--explain", tmp_path / "a_file" / "sub")
    assert proc.returncode == 2 and "cannot create the folder" in proc.stderr


def test_file_and_folder_names_that_are_not_utf8(tiny_tflite, tmp_path):
    """Any name the file system allows: inputs and output folders whose bytes are not UTF-8 (OpenCV's
    video reader and writer segfaulted on them; images are written by Python, videos through an alias)."""
    import shutil
    base = os.fsencode(tmp_path)
    os.makedirs(base + b"/in\xe9")
    shutil.copy(SAMPLE, base + b"/in\xe9/ph\xe9oto.png")
    photo = cv2.resize(cv2.imread(SAMPLE), (240, 240))
    writer = cv2.VideoWriter(str(tmp_path / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 5, (320, 240))
    for k in range(3):
        frame = np.full((240, 320, 3), 60, np.uint8)
        frame[:, 20 * k:20 * k + 240] = photo
        writer.write(frame)
    writer.release()
    shutil.move(str(tmp_path / "clip.avi"), base + b"/cl\xe9p.avi")
    import subprocess
    import sys

    def run(*args):  # bytes in argv and out: the output names the files as they are
        proc = subprocess.run([sys.executable, os.path.join(ROOT, "predict.py"), *args, "--checkpoint", tiny_tflite],
                              cwd=ROOT, capture_output=True)
        assert proc.returncode == 0, proc.stderr[-500:]
        return proc
    run(base + b"/in\xe9", "--annotate", base + b"/out\xe9", "--explain", base + b"/exp\xe9")
    assert os.listdir(base + b"/out\xe9") == [b"ph\xe9oto.png"] and len(os.listdir(base + b"/exp\xe9")) == 1
    proc = run("--video", base + b"/cl\xe9p.avi", "--csv", base + b"/v\xe9/e.csv", "--annotate", base + b"/v\xe9")
    assert b"3 frames read, 3 classified" in proc.stderr
    assert sorted(os.listdir(base + b"/v\xe9")) == [b"annotated.mp4", b"e.csv", b"e.summary.json", b"e.timeline.png"]
    assert os.path.getsize(base + b"/v\xe9/annotated.mp4") > 0
