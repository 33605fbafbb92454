"""Your own faces: evaluate on a labelled photo collection (a folder of emotion folders), with the faces
found and aligned as predict does it, label names as collections spell them, and skipped images counted."""
import csv
import hashlib
import json
import os
import re

import cv2
import numpy as np
import pytest

from conftest import ROOT, run_script
from ferkit.backends import DEFAULT_MODEL

SAMPLE = os.path.join(ROOT, "samples", "astronaut.png")
MODEL = os.path.join(ROOT, "ferkit", "pretrained", DEFAULT_MODEL, "model.tflite")


def photos():
    """Two real photographs with one face each: the sample and matplotlib's portrait of Grace Hopper."""
    from matplotlib import cbook
    return cv2.imread(SAMPLE), cv2.imread(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


def snapshot(folder):
    return {os.path.relpath(os.path.join(r, f), folder): hashlib.sha256(open(os.path.join(r, f), "rb").read()).hexdigest()
            for r, _, names in os.walk(folder) for f in names}


@pytest.fixture
def collection(tmp_path):
    """happiness/: the sample photo and a 48x48 crop of its face (used as it is); neutrality/: the portrait,
    a faceless grey picture and a text file; contempt/: two images of a class the models do not have."""
    sample, portrait = photos()
    root = tmp_path / "my_photos"
    for name in ("happiness", "neutrality", "contempt"):
        (root / name).mkdir(parents=True)
    cv2.imwrite(str(root / "happiness" / "astronaut.png"), sample)
    cv2.imwrite(str(root / "happiness" / "crop.png"), cv2.resize(cv2.cvtColor(sample[70:180, 180:270], cv2.COLOR_BGR2GRAY), (48, 48)))
    cv2.imwrite(str(root / "neutrality" / "hopper.jpg"), portrait)
    cv2.imwrite(str(root / "neutrality" / "blank.png"), np.full((300, 300, 3), 128, np.uint8))
    (root / "neutrality" / "notes.txt").write_text("not a photo")
    for k in range(2):
        cv2.imwrite(str(root / "contempt" / f"{k}.png"), sample)
    return root


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_a_collection_is_evaluated_through_the_same_face_path_as_predict(tmp_path, collection):
    before = snapshot(collection)
    out = tmp_path / "reports"
    proc = run_script("evaluate.py", "--checkpoint", MODEL, "--data", collection, "--out", out, "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["split"] == "collection" and report["data"]["faces"] == 3 and report["data"]["skipped"] == 2
    assert "left out 2 images of contempt," in proc.stderr and "skipped 2 of 5 images: 1 no face found, 1 cannot be read" in proc.stderr
    faces = {os.path.basename(r["file"]): r for r in rows(out / "model.eval_collection.faces.csv")}
    assert sorted(faces) == ["astronaut.png", "crop.png", "hopper.jpg"]
    assert faces["crop.png"]["x"] == ""  # a 48x48 crop is taken as it is, not searched for a face
    assert [r["emotion"] for r in faces.values()] == ["happy", "happy", "neutral"]
    correct = sum(r["emotion"] == r["predicted"] for r in faces.values())
    assert report["accuracy"] == pytest.approx(correct / 3, abs=1e-4)
    for name in ("astronaut.png", "hopper.jpg"):  # the same detector, alignment and model as predict's largest face
        said = json.loads(run_script("predict.py", collection / ("happiness" if name == "astronaut.png" else "neutrality") / name,
                                     "--checkpoint", MODEL, "--json").stdout)
        face = said[0]["faces"][0] if isinstance(said, list) else said["faces"][0]
        assert [int(faces[name][k]) for k in "xywh"] == face["box"] and faces[name]["predicted"] == face["emotion"]
        assert float(faces[name][face["emotion"]]) == pytest.approx(face["probabilities"][face["emotion"]], abs=2e-4)
    skipped = {os.path.basename(r["file"]): r["reason"] for r in rows(out / "model.eval_collection.skipped.csv")}
    assert skipped["blank.png"] == "no face found" and "notes.txt" in skipped
    sheet = cv2.imread(str(out / "model.eval_collection.mistakes.png"))
    assert sheet is not None and sheet.shape[1] == 960 and sheet.shape[0] >= 96
    assert (out / "model.eval_collection.png").is_file()  # the confusion matrix
    assert snapshot(collection) == before  # nothing in the collection written to


def test_numbered_folders_need_a_label_map(tmp_path):
    sample, portrait = photos()
    root = tmp_path / "numbered"
    for name, image in (("4", sample), ("7", portrait)):
        (root / name).mkdir(parents=True)
        cv2.imwrite(str(root / name / "face.png"), image)
    proc = run_script("evaluate.py", "--checkpoint", MODEL, "--data", root, "--out", tmp_path / "r")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "unknown emotion folder '4'" in proc.stderr and "--label-map 4=EMOTION" in proc.stderr and "happiness" in proc.stderr
    assert not (tmp_path / "r").exists()
    proc = run_script("evaluate.py", "--checkpoint", MODEL, "--data", root, "--out", tmp_path / "r", "--json",
                      "--label-map", "4=happiness,7=neutral")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["data"]["faces"] == 2


RAF_DB = "1=surprise,2=fear,3=disgust,4=happiness,5=sadness,6=anger,7=neutral"  # RAF-DB's numbered folders


def test_preprocess_and_train_take_a_label_map_and_faces_as_evaluate_does(tmp_path):
    """Numbered folders (RAF-DB's) through preprocess and train: refused in one line without --label-map,
    read with it; train records both options in config.json; --faces as-is takes a photo whole."""
    from conftest import balanced_labels, synthetic_faces
    from ferkit.dataset import EMOTIONS
    labels = balanced_labels(10)
    number = {e: k.split("=")[0] for e, k in zip(("surprise", "fear", "disgust", "happy", "sad", "angry", "neutral"),
                                                  RAF_DB.split(","))}
    root = tmp_path / "raf"
    for k, (label, face) in enumerate(zip(labels, synthetic_faces(labels, seed=3))):
        folder = root / number[EMOTIONS[label]]
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"{k}.png"), face[..., 0])
    before = snapshot(root)
    proc = run_script("preprocess.py", "--input", root, "--out", tmp_path / "raf.npz")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "--label-map" in proc.stderr, proc.stderr
    assert not (tmp_path / "raf.npz").exists()
    run_script("preprocess.py", "--input", root, "--out", tmp_path / "raf.npz", "--label-map", RAF_DB, check=0)
    from ferkit import data
    counts = np.bincount(np.concatenate([y for _, y in data.load(tmp_path / "raf.npz").splits.values()]), minlength=7)
    assert counts.tolist() == [10] * 7  # each numbered folder became its own emotion
    out = tmp_path / "run"
    run_script("train.py", "--arch", "dnn", "--data", root, "--label-map", RAF_DB, "--faces", "as-is",
               "--epochs", 1, "--max-steps", 2, "--batch-size", 16, "--out", out, check=0)
    recorded = json.loads((out / "config.json").read_text())["settings"]
    assert recorded["label_map"] == RAF_DB and recorded["faces"] == "as-is" and recorded["data_size"] == 62
    assert snapshot(root) == before


@pytest.mark.parametrize("layout, message", [
    ({"happy": 2}, "only one emotion"),
    ({"happy": 0, "sad": 0}, "no images"),
    ({"happy": 1, "sad": 1, "contempt": 1}, None),
])
def test_too_few_classes_is_one_line_before_any_work(tmp_path, layout, message):
    sample = photos()[0]
    root = tmp_path / "c"
    for name, n in layout.items():
        (root / name).mkdir(parents=True)
        for k in range(n):
            cv2.imwrite(str(root / name / f"{k}.png"), sample)
    proc = run_script("evaluate.py", "--checkpoint", MODEL, "--data", root, "--out", tmp_path / "r")
    if message is None:
        assert proc.returncode == 0, proc.stderr
        return
    assert proc.returncode == 2 and message in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    assert not (tmp_path / "r").exists()


def test_an_output_inside_the_collection_is_refused(tmp_path, collection):
    before = snapshot(collection)
    proc = run_script("evaluate.py", "--checkpoint", MODEL, "--data", collection, "--out", collection / "reports")
    assert proc.returncode == 2 and "error:" in proc.stderr, proc.stderr
    assert snapshot(collection) == before and not (collection / "reports").exists()


SPELLED = ("anger", "disgusted", "fearful", "happiness", "sadness", "surprised", "neutrality")  # as collections name them


def test_fine_tuning_on_a_collection_reports_before_and_after(tmp_path, tiny_checkpoint):
    """train --init-from a run folder --data COLLECTION: a stratified, seeded validation split carved out
    (printed, and in config.json), the starting model's accuracy before and the best after, and a run
    folder that evaluate takes like any other."""
    from conftest import balanced_labels, synthetic_faces
    labels = balanced_labels(10)
    root = tmp_path / "crops"
    for k, (label, face) in enumerate(zip(labels, synthetic_faces(labels, seed=5))):
        (root / SPELLED[label]).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / SPELLED[label] / f"{k}.png"), face[..., 0])  # 48x48 crops: used as they are
    (root / "contempt").mkdir()  # CK+'s eighth class: left out, counted
    for k in range(3):
        cv2.imwrite(str(root / "contempt" / f"{k}.png"), synthetic_faces([0], seed=k)[0, ..., 0])
    before = snapshot(root)
    out = tmp_path / "tuned"
    proc = run_script("train.py", "--arch", "acnn_alstm", "--init-from", tiny_checkpoint, "--data", root, "--epochs", 2,
                      "--batch-size", 16, "--lr", 1e-4, "--out", out)
    assert proc.returncode == 0, proc.stderr
    start = re.search(r"before fine-tuning: PublicTest accuracy (\d\.\d{4})", proc.stdout)
    assert start and "carved a stratified validation split of 8 rows (seed 0)" in proc.stdout, proc.stdout
    assert f"(the starting model's {start.group(1)} before fine-tuning)" in proc.stdout.splitlines()[-1]
    config = json.loads((out / "config.json").read_text())
    assert config["settings"]["data_size"] == 62 and any("validation split of 8" in n for n in config["data_notes"])
    report = run_script("evaluate.py", "--checkpoint", out, "--data", root, "--out", tmp_path / "r", "--json")
    assert report.returncode == 0 and json.loads(report.stdout)["data"]["faces"] == 70, report.stderr
    assert "left out 3 images of contempt" in report.stderr  # CK+'s names, no flags
    assert snapshot(root) == before


def test_init_from_takes_a_shipped_models_name(tmp_path):
    """--init-from NAME starts from the shipped model NAME's weights (hard labels: a collection has no
    vote shares, also when the start is the FER+ model); another architecture is refused in one line."""
    sample, portrait = photos()
    root = tmp_path / "c"
    for name, image in (("happy", sample), ("neutral", portrait)):
        (root / name).mkdir(parents=True)
        for k in range(8):
            cv2.imwrite(str(root / name / f"{k}.png"), cv2.resize(image, None, fx=1 + k / 10, fy=1 + k / 10))
    proc = run_script("train.py", "--arch", "dnn", "--init-from", DEFAULT_MODEL, "--data", root, "--out", tmp_path / "t")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "fine-tune the same model" in proc.stderr, proc.stderr
    proc = run_script("train.py", "--arch", "acnn_alstm", "--init-from", DEFAULT_MODEL, "--data", root, "--epochs", 1,
                      "--batch-size", 8, "--out", tmp_path / "t")
    assert proc.returncode == 0, proc.stderr
    shipped = os.path.join("ferkit", "pretrained", DEFAULT_MODEL, "best")
    assert f"starting from " in proc.stdout and shipped in proc.stdout and "before fine-tuning: PublicTest accuracy" in proc.stdout
    config = json.loads((tmp_path / "t" / "config.json").read_text())
    assert config["settings"]["labels"] == "fer2013" and config["settings"]["init_from"].endswith(DEFAULT_MODEL)
    # fine-tuning's own defaults where the command line gave none: --epochs 1 was given, the rest not
    assert "note: fine-tuning defaults --lr 0.0003 --patience 8 --warmup-epochs 0 " in proc.stdout
    assert {k: config["settings"][k] for k in ("lr", "epochs", "patience", "warmup_epochs", "batch_size")} == \
        {"lr": 3e-4, "epochs": 1, "patience": 8, "warmup_epochs": 0.0, "batch_size": 8}


def manifest_collection(tmp_path, rows):
    """Crops of the synthetic faces as PNGs under tmp_path/faces, and tmp_path/faces.csv listing `rows`
    (path,emotion,subject): a label's faces come from that class of synthetic_faces."""
    from conftest import synthetic_faces
    (tmp_path / "faces").mkdir(exist_ok=True)
    lines = ["path,emotion,subject"]
    for k, (emotion, subject) in enumerate(rows):
        label = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral").index(
            {"anger": "angry", "happiness": "happy"}.get(emotion, emotion))
        cv2.imwrite(str(tmp_path / "faces" / f"{k}.png"), synthetic_faces([label], seed=k)[0, ..., 0])
        lines.append(f"faces/{k}.png,{emotion},{subject}")
    (tmp_path / "faces.csv").write_text("\n".join(lines) + "\n")
    return tmp_path / "faces.csv"


def test_a_manifest_keeps_each_subject_on_one_side_of_the_split(tmp_path):
    from ferkit import data
    rows = [(("anger", "happiness", "sad", "neutral")[k % 4], f"s{k // 8}") for k in range(64)]  # 8 subjects of 8
    manifest = manifest_collection(tmp_path, rows)
    loaded = data.load(manifest, seed=3)
    train, val = loaded.splits["Training"], loaded.splits["PublicTest"]
    assert len(train[1]) + len(val[1]) == 64 and len(val[1]) == 8  # one subject of 8 faces: an eighth
    assert any("no subject is on both sides" in n for n in loaded.notes)
    again = data.load(manifest, seed=3).splits["PublicTest"]
    assert np.array_equal(again[0], val[0])  # seeded: the same subject again
    # which subject went to validation: its faces are exactly the 8 held out
    from ferkit import collection
    sources = collection.load(manifest).sources
    held = {s["subject"] for s, face in zip(sources, collection.load(manifest).faces)
            if any(np.array_equal(face, v) for v in val[0])}
    assert len(held) == 1


def test_split_evaluates_only_a_manifests_rows_of_that_split(tmp_path):
    """The people a fine-tuned model never saw: --split PrivateTest keeps the manifest's test rows alone;
    without a split column it is a one-line error, and without --split the whole collection counts."""
    manifest = manifest_collection(tmp_path, [(("anger", "happiness", "sad", "neutral")[k % 4], f"s{k // 4}")
                                              for k in range(12)])
    plain = manifest.read_text().splitlines()
    proc = run_script("evaluate.py", "--checkpoint", MODEL, "--data", manifest, "--split", "PrivateTest",
                      "--out", tmp_path / "r")
    assert proc.returncode == 2 and "no test rows" in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    split_of = {"s0": "train", "s1": "val", "s2": "test"}
    manifest.write_text("\n".join([plain[0] + ",split"] + [f"{line},{split_of[line.split(',')[2]]}"
                                                         for line in plain[1:]]) + "\n")
    before = snapshot(tmp_path / "faces")
    proc = run_script("evaluate.py", "--checkpoint", MODEL, "--data", manifest, "--split", "PrivateTest",
                      "--out", tmp_path / "r", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["split"] == "collection_PrivateTest" and report["n"] == 4
    assert sorted(os.path.basename(r["file"]) for r in rows(tmp_path / "r" / "model.eval_collection_PrivateTest.faces.csv")) \
        == ["10.png", "11.png", "8.png", "9.png"]
    # four emotions held: macro recall is their mean, not diluted by the three absent ones
    recalls = [report["per_class"][e]["recall"] for e in ("angry", "happy", "sad", "neutral")]
    assert report["macro"]["recall"] == pytest.approx(sum(recalls) / 4)
    whole = json.loads(run_script("evaluate.py", "--checkpoint", MODEL, "--data", manifest, "--out",
                                  tmp_path / "r", "--json", check=0).stdout)
    assert whole["split"] == "collection" and whole["n"] == 12
    assert snapshot(tmp_path / "faces") == before


@pytest.mark.parametrize("line, message", [
    ("faces/missing.png,happy,s1", "faces.csv:3: no such file 'faces/missing.png'"),
    ("faces/0.png,elated,s1", "faces.csv:3: unknown emotion 'elated'"),
])
def test_a_bad_manifest_row_names_its_line(tmp_path, line, message):
    manifest = manifest_collection(tmp_path, [("happy", "s0"), ("sad", "s1")])
    manifest.write_text(manifest.read_text().splitlines()[0] + "\n" + manifest.read_text().splitlines()[1] + "\n" + line + "\n")
    proc = run_script("evaluate.py", "--checkpoint", MODEL, "--data", manifest, "--out", tmp_path / "r")
    assert proc.returncode == 2 and message in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    assert not (tmp_path / "r").exists()


def test_a_cache_made_from_a_collection_records_where_each_face_came_from(tmp_path, collection):
    """preprocess --input COLLECTION: Training and a carved PublicTest, each face's photo and box kept
    beside it (<Split>_sources), so that a face can be traced back; the collection is not written to."""
    before = snapshot(collection)
    proc = run_script("preprocess.py", "--input", collection, "--out", tmp_path / "mine.npz")
    assert proc.returncode == 0, proc.stderr
    with np.load(tmp_path / "mine.npz") as z:
        sources = list(z["Training_sources"]) + list(z["PublicTest_sources"])
        assert len(z["Training_images"]) + len(z["PublicTest_images"]) == 3 == len(sources)
    by_name = {os.path.basename(s.split("#")[0]): s for s in sources}
    assert sorted(by_name) == ["astronaut.png", "crop.png", "hopper.jpg"]
    assert "#" not in by_name["crop.png"] and len(by_name["astronaut.png"].split("#")[1].split(",")) == 4
    assert snapshot(collection) == before


def test_a_train_val_test_layout_of_emotion_folders(tmp_path):
    """train/ val/ test/ of emotion folders spelled as collections spell them: val/ is PublicTest, test/
    PrivateTest; photos go through the face path, 48x48 crops as they are, a faceless photo is skipped."""
    from conftest import synthetic_faces
    from ferkit import data
    sample = photos()[0]
    for part, emotion, k in (("train", "happiness", 0), ("train", "sadness", 1), ("val", "happiness", 2),
                             ("val", "sadness", 3), ("test", "sadness", 4), ("test", "happiness", 5)):
        folder = tmp_path / "ds" / part / emotion
        folder.mkdir(parents=True, exist_ok=True)
        label = 3 if emotion == "happiness" else 4
        cv2.imwrite(str(folder / f"{k}.png"), synthetic_faces([label], seed=k)[0, ..., 0])
    cv2.imwrite(str(tmp_path / "ds" / "train" / "happiness" / "photo.jpg"), sample)
    cv2.imwrite(str(tmp_path / "ds" / "train" / "sadness" / "blank.png"), np.full((200, 200, 3), 90, np.uint8))
    (tmp_path / "ds" / "train" / "contempt").mkdir()
    cv2.imwrite(str(tmp_path / "ds" / "train" / "contempt" / "c.png"), sample)
    loaded = data.load(tmp_path / "ds")
    assert {s: list(y) for s, (_, y) in loaded.splits.items()} == \
        {"Training": [3, 3, 4], "PublicTest": [3, 4], "PrivateTest": [3, 4]}
    reasons = {os.path.basename(w): r for w, r in loaded.skipped}
    assert reasons == {"blank.png": "no face found", "contempt": "an emotion the models do not have; left out"}


def test_yale_manifests_keep_each_person_on_one_side(tmp_path):
    """tools/yale_faces.py: 60 expression photos of 15 people, and three folds in which no person is in
    two splits; the database's folder is only read."""
    folder = tmp_path / "yalefaces"
    folder.mkdir()
    for person in range(1, 16):
        for kind in ("happy", "sad", "surprised", "normal", "sleepy", "wink", "glasses"):
            (folder / f"subject{person:02d}.{kind}").write_bytes(b"GIF89a")
    before = snapshot(folder)
    run_script("tools/yale_faces.py", folder, "--out", tmp_path / "m", check=0)
    assert snapshot(folder) == before
    assert len(rows(tmp_path / "m" / "all.csv")) == 60
    for fold in range(3):
        table = rows(tmp_path / "m" / f"fold{fold}.csv")
        sides = {}
        for row in table:
            sides.setdefault(row["subject"], set()).add(row["split"])
        assert all(len(s) == 1 for s in sides.values())
        people = {split: sorted(p for p, s in sides.items() if s == {split}) for split in ("train", "val", "test")}
        assert [len(people[s]) for s in ("train", "val", "test")] == [7, 3, 5]
        assert people["test"] == [f"s{p:02d}" for p in range(5 * fold + 1, 5 * fold + 6)]
    (folder / "subject03.sad").unlink()
    proc = run_script("tools/yale_faces.py", folder, "--out", tmp_path / "m2")
    assert proc.returncode == 1 and "subject03.sad: missing" in proc.stderr and not (tmp_path / "m2").exists()
