"""preprocess.py: every download layout, every kind of bad input, and the real data set's exact counts."""
import gzip
import io
import tarfile

import cv2
import numpy as np
import pytest

from conftest import REAL_CSV, balanced_labels, csv_rows, needs_real_data, run_script, synthetic_faces
from ferkit.data import load_cache

SPLIT_OF = {0: "Training", 1: "PublicTest", 2: "PrivateTest"}


def kaggle_csv(per_class=3):
    """(text of a fer2013.csv with every class in every split, labels, usages)."""
    labels = np.tile(balanced_labels(per_class), 3)
    usages = [SPLIT_OF[i // (7 * per_class)] for i in range(len(labels))]
    return "emotion,pixels,Usage\n" + "\n".join(csv_rows(labels, usages)) + "\n", labels, usages


def check_cache(path, expected_counts):
    """The cache loads without pickle, has the right dtypes and shapes, and these per-split sizes."""
    with np.load(path, allow_pickle=False) as z:
        for split, n in expected_counts.items():
            images, labels = z[f"{split}_images"], z[f"{split}_labels"]
            assert images.dtype == np.uint8 and images.shape == (n, 48, 48, 1)
            assert labels.shape == (n, 7) and (labels.sum(1) == 1).all()
        assert sorted(k.split("_")[0] for k in z.files if k.endswith("_images")) == sorted(expected_counts)


def test_plain_csv_round_trip(tmp_path):
    text, labels, usages = kaggle_csv()
    (tmp_path / "fer2013.csv").write_text(text)
    out = tmp_path / "cache.npz"
    proc = run_script("preprocess.py", "--input", tmp_path / "fer2013.csv", "--out", out, check=0)
    assert "Training" in proc.stdout and "angry" in proc.stdout  # the class-count table
    check_cache(out, {"Training": 21, "PublicTest": 21, "PrivateTest": 21})
    splits = load_cache(out)
    expected = synthetic_faces(labels)
    train = [i for i, u in enumerate(usages) if u == "Training"]
    np.testing.assert_array_equal(splits["Training"][0], expected[train])
    np.testing.assert_array_equal(splits["Training"][1], labels[train])


def test_gzip_csv(tmp_path):
    text, _, _ = kaggle_csv()
    with gzip.open(tmp_path / "fer2013.csv.gz", "wt") as f:
        f.write(text)
    run_script("preprocess.py", "--input", tmp_path / "fer2013.csv.gz", "--out", tmp_path / "c.npz", check=0)
    check_cache(tmp_path / "c.npz", {"Training": 21, "PublicTest": 21, "PrivateTest": 21})


def test_kaggle_tar_gz(tmp_path):
    text, _, _ = kaggle_csv()
    payload = text.encode()
    with tarfile.open(tmp_path / "fer2013.tar.gz", "w:gz") as tar:
        for name, data in (("fer2013/README", b"readme"), ("fer2013/fer2013.csv", payload)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    run_script("preprocess.py", "--input", tmp_path / "fer2013.tar.gz", "--out", tmp_path / "c.npz", check=0)
    check_cache(tmp_path / "c.npz", {"Training": 21, "PublicTest": 21, "PrivateTest": 21})


def test_icml_face_data_leading_spaces(tmp_path):
    labels = np.tile(balanced_labels(2), 3)
    usages = [SPLIT_OF[i // 14] for i in range(len(labels))]
    faces = synthetic_faces(labels)
    rows = [f"{k}, {u}, {' '.join(map(str, f.ravel()))}" for k, u, f in zip(labels, usages, faces)]
    (tmp_path / "icml_face_data.csv").write_text("emotion, Usage, pixels\n" + "\n".join(rows) + "\n")
    run_script("preprocess.py", "--input", tmp_path / "icml_face_data.csv", "--out", tmp_path / "c.npz", check=0)
    check_cache(tmp_path / "c.npz", {"Training": 14, "PublicTest": 14, "PrivateTest": 14})
    np.testing.assert_array_equal(load_cache(tmp_path / "c.npz")["PublicTest"][0], faces[14:28])


def test_train_csv_without_usage_carves_stratified_validation(tmp_path):
    labels = balanced_labels(16)
    (tmp_path / "train.csv").write_text("emotion,pixels\n" + "\n".join(csv_rows(labels)) + "\n")
    proc = run_script("preprocess.py", "--input", tmp_path / "train.csv", "--out", tmp_path / "c.npz", check=0)
    assert "no Usage column" in proc.stdout and "carved" in proc.stdout
    splits = load_cache(tmp_path / "c.npz")
    assert len(splits["PublicTest"][1]) == 112 // 8 and len(splits["Training"][1]) == 112 - 14
    assert (np.bincount(splits["PublicTest"][1], minlength=7) == 2).all()  # stratified
    again = tmp_path / "again.npz"
    run_script("preprocess.py", "--input", tmp_path / "train.csv", "--out", again, check=0)
    np.testing.assert_array_equal(load_cache(again)["PublicTest"][0], splits["PublicTest"][0])  # seeded


def write_image_folder(root, name_prefix=True, per_class=2):
    """train/<Emotion>/ and test/<EMOTION>/ (mixed case) of PNG and JPEG faces."""
    emotions = ["Angry", "disgust", "FEAR", "Happy", "sad", "Surprise", "neutral"]
    labels = balanced_labels(per_class)
    faces = synthetic_faces(labels)
    for part in ("train", "test"):
        for i, (k, face) in enumerate(zip(labels, faces)):
            folder = root / part / (emotions[k] if part == "train" else emotions[k].upper())
            folder.mkdir(parents=True, exist_ok=True)
            split = "PublicTest" if i % 2 else "PrivateTest"
            name = f"{'Training' if part == 'train' else split}_{i}" if name_prefix else f"im{i}"
            cv2.imwrite(str(folder / f"{name}.png"), face[:, :, 0])
    return labels, faces


def test_image_folder_with_split_prefixes(tmp_path):
    labels, faces = write_image_folder(tmp_path / "fer")
    run_script("preprocess.py", "--input", tmp_path / "fer", "--out", tmp_path / "c.npz", check=0)
    check_cache(tmp_path / "c.npz", {"Training": 14, "PublicTest": 7, "PrivateTest": 7})
    train_images, train_labels = load_cache(tmp_path / "c.npz")["Training"]
    assert sorted(train_labels) == sorted(labels)
    np.testing.assert_array_equal(np.sort(train_images.reshape(14, -1), 0), np.sort(faces.reshape(14, -1), 0))


def test_image_folder_without_prefixes_halves_test(tmp_path):
    write_image_folder(tmp_path / "fer", name_prefix=False)
    proc = run_script("preprocess.py", "--input", tmp_path / "fer", "--out", tmp_path / "c.npz", check=0)
    assert "halves" in proc.stdout
    check_cache(tmp_path / "c.npz", {"Training": 14, "PublicTest": 7, "PrivateTest": 7})


def bad_case(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


GOOD = csv_rows([3], ["Training"])[0]
PIXELS = " ".join(["7"] * 2304)
BAD_CSVS = {
    "short_row": ("emotion,pixels,Usage\n" + GOOD + "\n3," + " ".join(["7"] * 2303) + ",Training\n",
                  "line 3", "2303 pixels, expected 2304"),
    "non_numeric": ("emotion,pixels,Usage\n3," + PIXELS.replace("7", "x", 1) + ",Training\n",
                    "line 2", "pixel 0 is 'x', not an integer"),
    "out_of_range": ("emotion,pixels,Usage\n" + GOOD + "\n" + GOOD + "\n3," + "300 " + PIXELS[2:] + ",Training\n",
                     "line 4", "pixel 0 is 300, outside 0..255"),
    "bad_label": ("emotion,pixels,Usage\n9," + PIXELS + ",Training\n", "line 2", "emotion '9' is not a label 0..6"),
    "unknown_usage": ("emotion,pixels,Usage\n3," + PIXELS + ",Testing\n", "line 2", "unknown Usage 'Testing'"),
    "missing_columns": ("emotion,Usage\n3,Training\n", "line 1", "missing column(s) pixels"),
    "empty": ("", None, "file is empty"),
    "binary": (b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe binary", "line 1", "not a CSV file"),
}


@pytest.mark.parametrize("case", sorted(BAD_CSVS))
def test_bad_csv_fails_with_one_line_and_no_cache(tmp_path, case):
    content, where, what = BAD_CSVS[case]
    path = bad_case(tmp_path, "fer2013.csv", content)
    out = tmp_path / "cache.npz"
    proc = run_script("preprocess.py", "--input", path, "--out", out)
    assert proc.returncode == 2
    message = proc.stderr.strip()
    assert len(message.splitlines()) == 1 and "Traceback" not in proc.stderr
    assert message.startswith(f"error: {path}" + (f":{where}" if where else ""))
    assert what in message
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["fer2013.csv"]  # no temporary file left either


def test_unreadable_image_in_folder(tmp_path):
    write_image_folder(tmp_path / "fer")
    broken = tmp_path / "fer" / "train" / "Happy" / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    proc = run_script("preprocess.py", "--input", tmp_path / "fer", "--out", tmp_path / "c.npz")
    assert proc.returncode == 2 and f"error: {broken}: cannot read image" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "c.npz").exists()
    proc = run_script("preprocess.py", "--input", tmp_path / "fer", "--out", tmp_path / "c.npz", "--skip-bad", check=0)
    assert "skipped 1" in proc.stdout and str(broken) in proc.stdout
    check_cache(tmp_path / "c.npz", {"Training": 14, "PublicTest": 7, "PrivateTest": 7})


def test_skip_bad_reports_lines(tmp_path):
    content = ("emotion,pixels,Usage\n" + GOOD + "\n9," + PIXELS + ",Training\n" + GOOD + "\n3,"
               + PIXELS[:-2] + ",Training\n")
    path = bad_case(tmp_path, "fer2013.csv", content)
    proc = run_script("preprocess.py", "--input", path, "--out", tmp_path / "c.npz", "--skip-bad", check=0)
    assert "skipped 2 bad row(s)" in proc.stdout
    assert "line 3: emotion '9'" in proc.stdout and "line 5: 2303 pixels" in proc.stdout
    check_cache(tmp_path / "c.npz", {"Training": 2})


def test_missing_file(tmp_path):
    proc = run_script("preprocess.py", "--input", tmp_path / "nope.csv", "--out", tmp_path / "c.npz")
    assert proc.returncode == 2 and "no such file" in proc.stderr and not (tmp_path / "c.npz").exists()


@needs_real_data
def test_real_fer2013_split_sizes_and_class_counts(tmp_path):
    out = tmp_path / "fer2013.npz"
    run_script("preprocess.py", "--input", REAL_CSV, "--out", out, check=0)
    expected = {"Training": [3995, 436, 4097, 7215, 4830, 3171, 4965],
                "PublicTest": [467, 56, 496, 895, 653, 415, 607],
                "PrivateTest": [491, 55, 528, 879, 594, 416, 626]}
    check_cache(out, {"Training": 28709, "PublicTest": 3589, "PrivateTest": 3589})
    for split, (_, labels) in load_cache(out).items():
        assert np.bincount(labels, minlength=7).tolist() == expected[split]


def test_hidden_files_are_skipped_and_nested_folders_refused(tmp_path):
    """macOS leaves ._NAME resource forks and .DS_Store beside copied images: skipped, as predict.py
    skips them.  A folder inside an emotion folder would be ignored silently: refused, named."""
    write_image_folder(tmp_path / "fer")
    (tmp_path / "fer" / "train" / "Happy" / "._Training_0.png").write_bytes(b"\x00\x05\x16\x07 resource fork")
    (tmp_path / "fer" / "train" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    run_script("preprocess.py", "--input", tmp_path / "fer", "--out", tmp_path / "c.npz", check=0)
    check_cache(tmp_path / "c.npz", {"Training": 14, "PublicTest": 7, "PrivateTest": 7})
    (tmp_path / "fer" / "train" / "sad" / "more").mkdir()
    proc = run_script("preprocess.py", "--input", tmp_path / "fer", "--out", tmp_path / "d.npz")
    assert proc.returncode == 2 and "train/sad/more: a folder inside an emotion folder" in proc.stderr
    assert not (tmp_path / "d.npz").exists()


@pytest.mark.parametrize("damage, phrase", [
    ("counts", "Training has 14 images but 5 labels"),
    ("ten columns", "Training_labels has shape (14, 10)"),
    ("no label", "rows without a label"),
    ("huge header", "Training_images.npy claims 230,400,000,000 bytes"),
])
def test_damaged_caches_are_refused_by_name(tmp_path, damage, phrase):
    """Caches are ours, but a damaged one must not train on part of its faces, labels out of range,
    or allocate what its header claims."""
    import zipfile
    from ferkit.data import DataError, load, save_cache
    labels = balanced_labels(2)
    splits = {s: (synthetic_faces(labels, i), labels) for i, s in enumerate(("Training", "PublicTest", "PrivateTest"))}
    good = tmp_path / "good.npz"
    save_cache(good, splits)
    arrays = dict(np.load(good))
    if damage == "counts":
        arrays["Training_labels"] = arrays["Training_labels"][:5]
    elif damage == "ten columns":
        arrays["Training_labels"] = np.zeros((14, 10), np.uint8)
        arrays["Training_labels"][:, 9] = 1
    elif damage == "no label":
        arrays["Training_labels"][3] = 0
    bad = tmp_path / "bad.npz"
    np.savez(bad, **arrays)
    if damage == "huge header":  # a header that claims 215 GiB for the images, in a small member
        with zipfile.ZipFile(bad) as z:
            members = {n: z.read(n) for n in z.namelist()}
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False,
                                                     "shape": (100_000_000, 48, 48, 1)})
        members["Training_images.npy"] = b"\x93NUMPY\x01\x00" + header.getvalue()[8:] + b"\x00" * 100
        with zipfile.ZipFile(bad, "w") as z:
            for name, content in members.items():
                z.writestr(name, content)
    with pytest.raises(DataError, match="run preprocess.py again") as refused:
        load(bad)
    assert phrase in str(refused.value)


def test_a_gzip_holding_one_huge_line_is_refused_without_reading_it_whole(tmp_path):
    """1 MB of gzip holding a 200 MB line: refused at that line, never held in memory whole."""
    import resource
    path = tmp_path / "bomb.csv.gz"
    with gzip.open(path, "wb", compresslevel=9) as f:
        f.write(b"emotion,pixels,Usage\n0,")
        for _ in range(200):
            f.write(b"1" * (1 << 20))
    assert path.stat().st_size < 2_000_000
    proc = run_script("preprocess.py", "--input", path, "--out", tmp_path / "c.npz")
    assert proc.returncode == 2 and f"error: {path}:line 2: longer than 64 KB" in proc.stderr
    assert not (tmp_path / "c.npz").exists()
    from ferkit.data import DataError, load
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(DataError):
        load(path)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000  # KB: far less than the line


def test_the_old_spelling_csv_still_works_and_says_so(tmp_path):
    text, _, _ = kaggle_csv()
    (tmp_path / "fer2013.csv").write_text(text)
    proc = run_script("preprocess.py", "--csv", tmp_path / "fer2013.csv", "--out", tmp_path / "c.npz", check=0)
    assert "note: --csv is now --input in preprocess" in proc.stderr
    check_cache(tmp_path / "c.npz", {"Training": 21, "PublicTest": 21, "PrivateTest": 21})
    proc = run_script("preprocess.py", "--csv", tmp_path / "fer2013.csv", "--input", tmp_path / "fer2013.csv")
    assert proc.returncode == 2 and "not allowed with argument" in proc.stderr
