"""Hostile and careless input, as a table: every command refuses, in one line, to write over, into or
through what it reads, what ships, a device or another of its own outputs, and never waits on a FIFO.

Each row: (command, arguments, exit status, a phrase of the one-line message).  Placeholders: {tmp} the
test's folder (inputs, a FIFO, a user's files), {ckpt} a checkpoint folder of a user's, {tfl} a .tflite
export, {ship} a shipped model's folder.  Afterwards every file under {tmp} and the shipped folder is
as it was, by checksum, and no temporary is left (test_failures.tree_digest)."""
import gzip
import io
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time
import zipfile

import cv2
import numpy as np
import pytest

from conftest import ROOT, csv_rows, run_script
from test_failures import tree_digest

SHIPPED = pathlib.Path(ROOT, "ferkit", "pretrained", "acnn_alstm_ferplus")
SAMPLE = os.path.join(ROOT, "samples", "astronaut.png")

ROWS = [
    # 1. One rule for every output path: inputs, shipped files, devices, two outputs in one file, files not ours
    ("preprocess.py", "--input {tmp}/fer.csv --out {tmp}/fer.csv", 2, "is the input"),
    ("preprocess.py", "--input {tmp}/fer.csv.gz --out {tmp}/fer.csv.gz", 2, "is the input"),
    ("preprocess.py", "--input {tmp}/fer.zip --out {tmp}/fer.zip", 2, "is the input"),
    ("preprocess.py", "--input {tmp}/fer.csv --ferplus {tmp}/votes.csv --out {tmp}/votes.csv", 2, "is the input"),
    ("preprocess.py", "--input {tmp}/ds --out {tmp}/ds/train/happy/0.png", 2, "is inside the input"),
    ("preprocess.py", "--input {tmp}/fer.csv --out {ship}/model.tflite", 2, "inside the installed package"),
    ("preprocess.py", "--input {tmp}/fer.csv --out {ship}/config.json", 2, "inside the installed package"),
    ("preprocess.py", "--input {tmp}/fer.csv --out /dev/null", 2, "is a device, pipe or socket"),
    ("preprocess.py", "--input {tmp}/fer.csv --out {tmp}/fifo", 2, "is a device, pipe or socket"),
    ("preprocess.py", "--input {tmp}/fer.csv --out {tmp}/link_to_input.npz", 2, "is the input"),
    ("preprocess.py", "--input {tmp}/fer.csv --out {tmp}/users.npz", 2, "ferkit did not write it"),
    ("predict.py", "--video {tmp}/clip.avi --checkpoint {tfl} --csv {tfl}", 2, "is the input"),
    ("predict.py", "--video {tmp}/clip.avi --checkpoint {ckpt} --timeline {ckpt}/config.json", 2, "is the input"),
    ("predict.py", "--video {tmp}/clip.avi --checkpoint {tfl} --csv {ship}/log.csv", 2, "inside the installed package"),
    ("predict.py", "--video {tmp}/clip.avi --checkpoint {tfl} --csv {tmp}/o.csv --timeline {ship}/curves.png", 2,
     "inside the installed package"),
    ("predict.py", "--video {tmp}/clip.avi --checkpoint {tfl} --csv {tmp}/o.csv --timeline {tmp}/o.csv", 2,
     "is the same path as --csv"),
    ("predict.py", "--video {tmp}/clip.avi --checkpoint {tfl} --csv {tmp}/out/annotated.mp4 --annotate {tmp}/out", 2,
     "is the same path as --annotate's video"),
    ("predict.py", "--video {tmp}/clip.avi --checkpoint {tfl} --csv {tmp}/users.csv", 2, "ferkit did not write it"),
    ("predict.py", "{tmp}/photos --checkpoint {tfl} --annotate {tmp}/o --explain {tmp}/o", 2, "is the same path as"),
    ("predict.py", "{tmp}/photos --checkpoint {tfl} --annotate {ship}", 2, "inside the installed package"),
    ("predict.py", "{tmp}/photos --checkpoint {tfl} --annotate {tmp}/photos/sub", 2, "is inside the input"),
    ("evaluate.py", "--checkpoint {ckpt} --data {tmp}/fer.csv --split PublicTest", 2, "ferkit did not write it"),
    ("evaluate.py", "--checkpoint {ckpt} --data {tmp}/fer.csv --split PublicTest --out {ship}", 2,
     "inside the installed package"),
    ("export.py", "--checkpoint {ckpt} --out {ship}/x.tflite", 2, "inside a shipped model"),
    ("export.py", "--checkpoint {ckpt} --out {tmp}/link_to_folder.tflite", 2, "already exists"),
    ("annotate.py", "{tmp}/photos --out {ship}", 2, "inside the installed package"),
    ("annotate.py", "{tmp}/photos --out {tmp}/photos/out", 2, "is inside the input"),
    # Bounds on settings: checked before the graph is built
    ("train.py", "--arch acnn_alstm --data {tmp}/fer.csv --set first_width=100000 --out {tmp}/t", 2,
     "first_width=100000: must be a whole number from 1 to 1024"),
    ("train.py", "--arch acnn_alstm --data {tmp}/fer.csv --set lstm_units=2000000 --out {tmp}/t", 2,
     "lstm_units=2000000: must be a whole number from 1 to 4096"),
    ("preprocess.py", "--input {tmp}/encrypted.zip --out {tmp}/x.npz", 2, "unpack it with a zip tool"),
    ("preprocess.py", "--input {tmp}/deflate64.zip --out {tmp}/x.npz", 2, "unpack it with a zip tool"),
    # 3. Never hang on a FIFO or a device; a damaged config is one line
    ("preprocess.py", "--input {tmp}/fifo --out {tmp}/x.npz", 2, "not a regular file"),
    ("preprocess.py", "--input {tmp}/fer.csv --ferplus {tmp}/fifo --out {tmp}/x.npz", 2, "not a regular file"),
    ("preprocess.py", "--input {tmp}/fer.csv --ferplus /dev/zero --out {tmp}/x.npz", 2, "not a regular file"),
    ("evaluate.py", "--checkpoint {ckpt} --data {tmp}/fifo --split PublicTest --out {tmp}/r", 2, "not a regular file"),
    ("train.py", "--arch dnn --data {tmp}/fifo --out {tmp}/t", 2, "not a regular file"),
    ("predict.py", "--video {tmp}/fifo --checkpoint {tfl}", 2, "not a regular file"),
    ("predict.py", "{tmp}/fifo --checkpoint {tfl} --json", 1, "not a regular file"),
    ("predict.py", "--video {tmp}/photos/a.png --checkpoint {tfl}", 2, "cannot read it as a video"),
    ("evaluate.py", "--checkpoint {tmp}/list_settings --data {tmp}/fer.csv --split PublicTest --out {tmp}/r", 2,
     "not a valid checkpoint config"),
    ("evaluate.py", "--checkpoint {tmp}/deep_config --data {tmp}/fer.csv --split PublicTest --out {tmp}/r", 2,
     "nested too deep"),
]


@pytest.fixture
def hostile(tmp_path, tiny_checkpoint, tiny_tflite):
    """The test's folder, filled with inputs and traps; -> the placeholders' values."""
    labels = np.repeat(np.arange(7), 3)
    text = "emotion,pixels,Usage\n" + "\n".join(csv_rows(labels, ["Training"] * 14 + ["PublicTest"] * 7)) + "\n"
    (tmp_path / "fer.csv").write_text(text)
    (tmp_path / "fer.csv.gz").write_bytes(gzip.compress(text.encode()))
    with zipfile.ZipFile(tmp_path / "fer.zip", "w") as z:
        z.writestr("fer2013.csv", text)
    raw = (tmp_path / "fer.zip").read_bytes()
    central = raw.index(b"PK\x01\x02")
    encrypted, deflate64 = bytearray(raw), bytearray(raw)
    encrypted[6] |= 1  # the general-purpose flag's bit 0, in the local header and the central directory
    encrypted[central + 8] |= 1
    deflate64[8], deflate64[central + 10] = 9, 9  # compression method 9: Deflate64, which zipfile lacks
    (tmp_path / "encrypted.zip").write_bytes(bytes(encrypted))
    (tmp_path / "deflate64.zip").write_bytes(bytes(deflate64))
    (tmp_path / "votes.csv").write_text("Usage,Image name,neutral\n")
    for split in ("train", "test"):
        (tmp_path / "ds" / split / "happy").mkdir(parents=True)
        cv2.imwrite(str(tmp_path / "ds" / split / "happy" / "0.png"), np.full((48, 48), 128, np.uint8))
    (tmp_path / "photos").mkdir()
    shutil.copy(SAMPLE, tmp_path / "photos" / "a.png")
    os.mkfifo(tmp_path / "fifo")
    os.symlink(tmp_path / "fer.csv", tmp_path / "link_to_input.npz")
    os.symlink(tmp_path / "photos", tmp_path / "link_to_folder.tflite")
    (tmp_path / "users.npz").write_bytes(b"a file of the user's")
    (tmp_path / "users.csv").write_text("a file of the user's\n")
    writer = cv2.VideoWriter(str(tmp_path / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 5, (96, 96))
    for _ in range(3):
        writer.write(cv2.resize(cv2.imread(SAMPLE), (96, 96)))
    writer.release()
    ckpt = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint, ckpt, ignore=shutil.ignore_patterns("eval_*"))  # other tests' reports
    cv2.imwrite(str(ckpt / "eval_PublicTest.png"), np.zeros((8, 8), np.uint8))  # a picture of the user's
    shutil.copy(tiny_tflite, tmp_path / "m.tflite")
    for name, config in (("list_settings", {"model": "dnn", "hparams": {}, "settings": []}),
                         ("deep_config", None)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(json.dumps(config) if config else "[" * 10000 + "]" * 10000)
    return dict(tmp=tmp_path, ckpt=ckpt, tfl=tmp_path / "m.tflite", ship=SHIPPED)


@pytest.mark.parametrize("script, arguments, status, phrase", ROWS, ids=[f"{r[0]} {r[1]}" for r in ROWS])
def test_hostile_input_is_refused_in_one_line_and_nothing_is_touched(hostile, script, arguments, status, phrase):
    filled = arguments.format(**hostile)
    before = tree_digest(hostile["tmp"]), tree_digest(hostile["ship"]), os.path.exists("/dev/null") and not os.path.isfile("/dev/null")
    start = time.monotonic()
    proc = run_script(script, *filled.split(), process=True, timeout=120)  # a hang fails here, as a timeout
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == status, proc.stderr
    assert "Traceback" not in proc.stderr and any(phrase in line for line in lines), proc.stderr
    assert len([line for line in lines if "error" in line.lower()]) == 1, proc.stderr
    assert (tree_digest(hostile["tmp"]), tree_digest(hostile["ship"]),
            os.path.exists("/dev/null") and not os.path.isfile("/dev/null")) == before
    assert time.monotonic() - start < 100


def test_release_step_may_write_shipped_models_and_nothing_else(tmp_path):
    """FERKIT_RELEASE lifts the shipped rule for ferkit/pretrained alone (tools/ship_exports.py)."""
    from ferkit import files
    target = os.path.join(SHIPPED, "new.json")
    with pytest.raises(Exception, match="installed package"):
        files.check_outputs([("--out", target, "file")])
    os.environ[files.RELEASE] = "1"
    try:
        files.check_outputs([("--out", target, "file")])
        with pytest.raises(Exception, match="installed package"):
            files.check_outputs([("--out", os.path.join(ROOT, "ferkit", "web", "x.js"), "file")])
    finally:
        del os.environ[files.RELEASE]


def test_files_we_write_carry_our_mark_and_may_be_replaced(tmp_path):
    from ferkit import files
    ours, theirs = tmp_path / "ours.json", tmp_path / "theirs.json"
    files.write_json(ours, {"a": 1})
    theirs.write_text("{}")
    assert files.written_by_us(ours) and not files.written_by_us(theirs)
    files.check_outputs([("--out", str(ours), "file")])
    with pytest.raises(Exception, match="ferkit did not write it"):
        files.check_outputs([("--out", str(theirs), "file")])
    files.check_outputs([("--out", str(theirs), "file")], overwrite=True)


def test_a_resume_with_a_state_naming_missing_weights_deletes_nothing(tmp_path, tiny_checkpoint, synthetic_cache):
    """An older state.json put back names a checkpoint that is gone: a one-line error, every weight file stays."""
    folder = tmp_path / "run"
    shutil.copytree(tiny_checkpoint, folder)
    state = json.loads((folder / "state.json").read_text())
    state.update(finished=False, step=1, best_step=1, epoch=0)
    (folder / "state.json").write_text(json.dumps(state))
    before = tree_digest(folder)
    proc = run_script("train.py", "--arch", "acnn_alstm", "--data", synthetic_cache, "--epochs", 2, "--batch-size", 16,
                      "--out", folder)
    assert proc.returncode == 2 and "which is not there" in proc.stderr and "state.json" in proc.stderr, proc.stderr
    assert tree_digest(folder) == before


@pytest.mark.parametrize("state, phrase", [({"epoch": "three"}, "'epoch' is \"three\""),
                                           ({"best_step": [1]}, "'best_step' is [1]"),
                                           ({"epoch": -2}, "below 0"), ({"log": [1, 2]}, "not objects")])
def test_state_json_of_the_wrong_types_is_one_line(tmp_path, tiny_checkpoint, synthetic_cache, state, phrase):
    folder = tmp_path / "run"
    shutil.copytree(tiny_checkpoint, folder)
    (folder / "state.json").write_text(json.dumps({**json.loads((folder / "state.json").read_text()), **state}))
    before = tree_digest(folder)
    proc = run_script("train.py", "--arch", "acnn_alstm", "--data", synthetic_cache, "--epochs", 3, "--batch-size", 16,
                      "--out", folder)
    assert proc.returncode == 2 and phrase in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert tree_digest(folder) == before


def test_annotate_overwrite_removes_only_what_the_dataset_wrote(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(SAMPLE, photos / "a.png")
    out = tmp_path / "dataset"
    run_script("annotate.py", photos, "--out", out, "--workers", 1, process=True, check=0)
    shutil.copy(SAMPLE, out / "faces" / "my_photo.png")  # a user's file, put there by hand
    before = tree_digest(out)
    proc = run_script("annotate.py", photos, "--out", out, "--workers", 1, "--overwrite", process=True)
    assert proc.returncode == 2 and "my_photo.png was not written by annotate.py" in proc.stderr, proc.stderr
    assert tree_digest(out) == before
    os.remove(out / "faces" / "my_photo.png")
    proc = run_script("annotate.py", photos, "--out", out, "--workers", 1, process=True)
    assert proc.returncode == 0 and "nothing left to run" in proc.stdout and "None" not in proc.stdout, proc.stdout


def test_embedded_ray_caps_workers_at_its_cpus_and_a_dead_address_fails_fast(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(SAMPLE, photos / "a.png")
    start = time.monotonic()
    proc = run_script("annotate.py", photos, "--out", tmp_path / "o", "--address", "127.0.0.1:1", process=True)
    assert proc.returncode == 2 and "no Ray cluster answers there" in proc.stderr and time.monotonic() - start < 60
    assert "Traceback" not in proc.stderr
    proc = run_script("annotate.py", photos, "--out", tmp_path / "o", "--workers", 1000, process=True, check=0)
    assert f"running {os.cpu_count()}, not 1000" in proc.stderr or "running 1, not 1000" in proc.stderr, proc.stderr


def _bomb_script(path):
    """Python that imports cv2 first (so OpenCV's own limit is its default, 2^30 pixels), then reads path."""
    return ("import cv2\nfrom ferkit import photos\ntry:\n    photos.read_image(%r)\n    print('read')\n"
            "except photos.PhotoError as e:\n    print(type(e).__name__, e)\n"
            "print(next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM')) // 1024)\n"
            % str(path))  # VmHWM: the peak since exec (ru_maxrss would carry the forking test worker's)


def _tiff(width, height):
    from test_serve import _tiff_claiming
    return _tiff_claiming(width, height)


def _webp(width, height):
    from test_serve import _webp_claiming
    return _webp_claiming(width, height)


def _gif_with_a_big_frame():
    """A GIF whose logical screen is 16x16 and whose one frame claims 30000x30000."""
    from PIL import Image
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(buffer, "GIF")
    raw = bytearray(buffer.getvalue())
    at = raw.index(b"\x2c")  # the image descriptor
    raw[at + 5:at + 9] = (30000).to_bytes(2, "little") * 2
    return bytes(raw)


@pytest.mark.parametrize("name, make", [
    ("bomb.tif", lambda: _tiff(32768, 32768)), ("bomb.webp", lambda: _webp(16383, 16383)),
    ("bomb.gif", _gif_with_a_big_frame), ("bomb.pgm", lambda: b"P5\n# a comment\n20000 20000\n255\n" + b"\0" * 64),
])
def test_bombs_are_refused_by_their_declared_size_even_with_cv2_imported_first(tmp_path, name, make):
    path = tmp_path / name
    path.write_bytes(make())
    proc = subprocess.run([sys.executable, "-c", _bomb_script(path)], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    verdict, rss = proc.stdout.splitlines()
    assert verdict.startswith("TooLarge") and "pixels, over the limit" in verdict, proc.stdout + proc.stderr
    assert int(rss) < 400, rss


def test_a_sparse_huge_png_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "sparse.png"
    ok, png = cv2.imencode(".png", np.zeros((8, 8), np.uint8))
    with open(path, "wb") as f:
        f.write(png.tobytes())
        f.truncate(3 << 30)  # 3 GB, almost all of it a hole
    proc = subprocess.run([sys.executable, "-c", _bomb_script(path)], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    verdict, rss = proc.stdout.splitlines()
    assert verdict.startswith("TooLarge") and "MB" in verdict and int(rss) < 400, proc.stdout


def test_images_that_are_not_bombs_still_read(tmp_path):
    from PIL import Image
    from ferkit import photos
    picture = np.random.default_rng(0).integers(0, 255, (20, 30, 3), np.uint8)
    for fmt, ext in (("TIFF", "tif"), ("WEBP", "webp"), ("GIF", "gif"), ("PPM", "ppm"), ("BMP", "bmp")):
        Image.fromarray(picture).save(tmp_path / f"p.{ext}", fmt, **({"lossless": True} if fmt == "WEBP" else {}))
        assert photos.read_image(tmp_path / f"p.{ext}").shape == (20, 30, 3), fmt
    Image.fromarray(picture).save(tmp_path / "big.tif", "TIFF", compression="tiff_lzw")
    assert photos.read_image(tmp_path / "big.tif").shape == (20, 30, 3)


def test_an_output_name_too_long_is_one_entry_and_the_run_goes_on(tmp_path, tiny_tflite):
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(SAMPLE, photos / "a.png")
    shutil.copy(SAMPLE, photos / ("e" * 240 + ".png"))  # its heat map, e...e_face1_attention.png, is 260 bytes
    shutil.copy(SAMPLE, photos / "z.png")
    proc = run_script("predict.py", photos, "--checkpoint", tiny_tflite, "--explain", tmp_path / "maps", "--json")
    entries = json.loads(proc.stdout)
    assert proc.returncode == 1 and len(entries) == 3, proc.stderr
    assert [bool(e["error"]) for e in entries] == [False, True, False], entries
    assert "output name is too long" in entries[1]["error"]
    assert sorted(os.listdir(tmp_path / "maps")) == ["a_face1_attention.png", "z_face1_attention.png"]


def test_evaluate_says_when_it_reads_last_weights(tmp_path, synthetic_cache):
    folder = tmp_path / "short"
    run_script("train.py", "--arch", "dnn", "--data", synthetic_cache, "--max-steps", 2, "--batch-size", 8,
               "--out", folder, check=0)
    assert not (folder / "best" / "checkpoint").exists()
    proc = run_script("evaluate.py", "--checkpoint", folder, "--data", synthetic_cache, check=0)
    assert "has no best/ weights yet; using last/" in proc.stderr, proc.stderr


def test_the_api_takes_bytes_and_pil_images_and_raises_ferkit_errors(tiny_tflite, tmp_path):
    import ferkit
    from PIL import Image
    recognizer = ferkit.Recognizer(checkpoint=str(tiny_tflite))
    from_path = recognizer.recognize(SAMPLE)
    with open(SAMPLE, "rb") as f:
        assert recognizer.recognize(f.read()) == from_path
    with Image.open(SAMPLE) as image:
        assert recognizer.recognize(image) == from_path  # RGB, not read as BGR
        assert len(recognizer.recognize(image.convert("L"))) == 1
    for bad, phrase in ((b"\x89PNG\r\n\x1a\n garbage", "the image bytes: truncated PNG"),
                        (str(tmp_path / "missing.png"), "missing.png: cannot read file"),
                        (np.zeros((2, 2, 7)), "the image array: not an image array")):
        with pytest.raises(ferkit.FerkitError, match=phrase):
            recognizer.recognize(bad)
    with pytest.raises(ferkit.FerkitError, match="no such file or folder"):
        ferkit.Recognizer(checkpoint=str(tmp_path / "nowhere.tflite"))


def test_a_kill_right_after_the_final_commit_leaves_the_curves(tmp_path, synthetic_cache):
    """SIGKILL just after each commit of a 2-epoch run: once state.json says finished, curves.png is there."""
    for n in range(1, 6):
        folder = tmp_path / f"run{n}"
        command = [sys.executable, os.path.join(ROOT, "train.py"), "--arch", "dnn", "--data", str(synthetic_cache),
                   "--epochs", "2", "--batch-size", "16", "--out", str(folder)]
        proc = subprocess.run(command, cwd=ROOT, capture_output=True, env=dict(os.environ, FERKIT_KILL_AT=f"after_state:{n}"))
        if proc.returncode == 0:
            break
        state = json.loads((folder / "state.json").read_text())
        assert not state.get("finished") or (folder / "curves.png").exists(), n
    assert n > 2 and proc.returncode == 0 and (folder / "curves.png").exists()


def test_a_folder_replacement_killed_between_its_renames_is_put_back(tmp_path):
    """replace_folder killed (SIGKILL) between its two renames: the old folder sits aside; the next run of
    ours in that folder puts it back, and a later replacement that arrives removes the set-aside copy."""
    code = ("import os, sys\nfrom ferkit import files\nos.makedirs(sys.argv[1] + '.new/x', exist_ok=True)\n"
            "open(sys.argv[1] + '.new/x/f', 'w').write('new')\nfiles.replace_folder(sys.argv[1] + '.new', sys.argv[1])\n")
    folder = tmp_path / "model"
    (folder / "x").mkdir(parents=True)
    (folder / "x" / "f").write_text("old")
    proc = subprocess.run([sys.executable, "-c", code, str(folder)], cwd=ROOT, capture_output=True,
                          env=dict(os.environ, FERKIT_KILL_AT="aside:1"))
    assert proc.returncode == -9 and not folder.exists()
    aside = [n for n in os.listdir(tmp_path) if n.startswith(".ferkit-aside-")]
    assert len(aside) == 1 and (tmp_path / aside[0] / "x" / "f").read_text() == "old"
    from ferkit import files
    files.check_outputs([("--out", str(tmp_path / "other.json"), "file")])  # any command of ours writing there
    assert (folder / "x" / "f").read_text() == "old" and not any(n.startswith(".ferkit-") for n in os.listdir(tmp_path))
    subprocess.run([sys.executable, "-c", code, str(folder)], cwd=ROOT, check=True)
    assert (folder / "x" / "f").read_text() == "new" and sorted(os.listdir(tmp_path)) == ["model"]


def test_an_exclusive_write_never_replaces_what_appeared_meanwhile(tmp_path):
    """Two exports to one new name at once, without --overwrite: the one that finishes second keeps the first's."""
    from ferkit import files
    target = tmp_path / "m.tflite"
    with pytest.raises(Exception, match="appeared while this run was writing it"):
        with files.atomic_write(target, "wb", exclusive=True) as f:
            f.write(b"mine")
            target.write_bytes(b"the other run's")  # the other export lands first
    assert target.read_bytes() == b"the other run's" and os.listdir(tmp_path) == ["m.tflite"]


def test_a_csv_named_without_gz_finds_the_gz_beside_it(tmp_path):
    labels = np.repeat(np.arange(7), 3)
    text = "emotion,pixels,Usage\n" + "\n".join(csv_rows(labels, ["Training"] * 14 + ["PublicTest"] * 7)) + "\n"
    (tmp_path / "fer2013.csv.gz").write_bytes(gzip.compress(text.encode()))
    proc = run_script("preprocess.py", "--input", tmp_path / "fer2013.csv", "--out", tmp_path / "c.npz")
    assert proc.returncode == 0 and "reading" in proc.stderr and (tmp_path / "c.npz").exists(), proc.stderr


@pytest.fixture
def small_disk(tmp_path):
    """A 256 KB tmpfs at tmp_path/disk (needs root, as CI has; skipped otherwise, saying why)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root): the full-disk cases are not run")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_full_disk_is_one_line_and_leaves_nothing_half_written(small_disk, synthetic_cache, tiny_checkpoint):
    proc = run_script("train.py", "--arch", "dnn", "--data", synthetic_cache, "--epochs", 1, "--batch-size", 16,
                      "--out", small_disk / "run", process=True)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and "no space left on the device" in lines[-1], proc.stderr
    assert "Traceback" not in proc.stderr and "Exception in thread" not in proc.stderr, proc.stderr
    shutil.rmtree(small_disk / "run")
    proc = run_script("export.py", "--checkpoint", tiny_checkpoint, "--out", small_disk / "saved", "--format",
                      "saved_model", "--data", synthetic_cache, process=True)
    assert proc.returncode == 2 and "no space left on the device" in proc.stderr and "Traceback" not in proc.stderr, \
        proc.stderr
    assert os.listdir(small_disk) == []  # no export, no temporary


@pytest.mark.parametrize("damage", ["truncate", "garbage index", "fifo"])
def test_a_damaged_resume_point_is_one_line_and_nothing_is_removed(tmp_path, synthetic_cache, damage):
    folder = tmp_path / "run"
    run_script("train.py", "--arch", "dnn", "--data", synthetic_cache, "--epochs", 3, "--batch-size", 16,
               "--max-steps", 7, "--out", folder, check=0)
    last = folder / "last"
    data = next(p for p in last.iterdir() if ".data-" in p.name)
    if damage == "truncate":
        data.write_bytes(data.read_bytes()[:1000])
    elif damage == "garbage index":
        next(p for p in last.iterdir() if p.name.endswith(".index")).write_bytes(b"\x00garbage" * 50)
    else:
        data.unlink()
        os.mkfifo(data)
    before = tree_digest(folder)
    proc = run_script("train.py", "--arch", "dnn", "--data", synthetic_cache, "--epochs", 3, "--batch-size", 16,
                      "--out", folder, process=True, timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert ("damaged" in lines[-1] or "not a regular file" in lines[-1]), proc.stderr
    assert tree_digest(folder) == before


def test_train_overwrite_is_not_refused_for_a_killed_runs_own_temporary(tmp_path, synthetic_cache):
    folder = tmp_path / "run"
    args = ["train.py", "--arch", "dnn", "--data", synthetic_cache, "--epochs", 1, "--batch-size", 16,
            "--out", folder]
    run_script(*args, check=0)
    (folder / ".ferkit-999999-dead.tmp.json").write_text("{}")  # what a run killed inside a write left
    proc = run_script(*args, "--overwrite")
    assert proc.returncode == 0, proc.stderr
    assert not any(n.startswith(".ferkit-") for n in os.listdir(folder))
