"""What failures leave behind: kill -9 during training, finished models, moved folders, bad options and input."""
import csv
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import ROOT, csv_rows, run_script
from ferkit import backends

TRAIN = ("--arch", "dnn", "--batch-size", 16, "--seed", 1)


def train_args(folder, cache, epochs):
    """train.py's arguments for a short run of the DNN, as run_script takes them."""
    return ["train.py", *map(str, TRAIN), "--epochs", str(epochs), "--data", str(cache), "--out", str(folder)]


def train_command(folder, cache, epochs):
    """The same run as a command line for a process of its own (one the test kills)."""
    script, *args = train_args(folder, cache, epochs)
    return [sys.executable, os.path.join(ROOT, script), *args]


def committed(folder):
    """The folder's committed view, checked for consistency: state.json, log.csv and the index files agree."""
    if not (folder / "state.json").exists():  # killed before the first commit: nothing counts as saved
        state = {"epoch": 0, "best_accuracy": 0.0, "best_step": None, "step": None}
    else:
        state = json.loads((folder / "state.json").read_text())
    with open(folder / "log.csv") as f:
        log = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in log] == list(range(1, state["epoch"] + 1))  # one row per finished epoch
    for which, key in (("best", "best_step"), ("last", "step")):
        if state[key] is None:
            assert not (folder / which / "checkpoint").exists()
        else:
            index = (folder / which / "checkpoint").read_text()
            assert f'"model.ckpt-{state[key]}"' in index and str(folder) not in index  # relative: the folder can move
            assert (folder / which / f"model.ckpt-{state[key]}.index").exists()
    return state


def only_committed_files(folder, state):
    for which, key in (("best", "best_step"), ("last", "step")):
        names = sorted(os.listdir(folder / which))
        assert names == sorted(["checkpoint", f"model.ckpt-{state[key]}.index",
                                f"model.ckpt-{state[key]}.data-00000-of-00001"]), names
    leftovers = [n for n in os.listdir(folder) if "tmp" in n or "tempstate" in n]
    assert leftovers == []


TIMING = ("seconds", "images_per_s")  # the log columns that differ from run to run


def without_times(rows):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


def log_without_times(folder):
    """log.csv's rows without the columns that measure time."""
    with open(folder / "log.csv") as f:
        return without_times(csv.DictReader(f))


def kill_after_first_commit(command, folder, delay, sig=signal.SIGKILL):
    """Run command, send it sig (SIGKILL) `delay` seconds after its first state.json appears -> the finished Popen."""
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while not (folder / "state.json").exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(delay)
    proc.send_signal(sig)
    proc.communicate()
    return proc


def test_kill_9_at_any_moment_never_loses_the_best_model(tmp_path, synthetic_cache):
    """SIGKILL inside every step of the save sequence, and at random moments; resume each time."""
    folder = tmp_path / "ck"
    epochs = 25
    best = 0.0
    kills = ["after_best:1", "after_last:2", "before_state:2", "random", "after_state:3", "random", "random", "after_best:2"]
    rng = random.Random(0)
    for kill in kills:
        if kill == "random":  # somewhere in the next few epochs and their saves
            proc = kill_after_first_commit(train_command(folder, synthetic_cache, epochs), folder, rng.uniform(0.0, 1.0))
        else:
            proc = subprocess.run(train_command(folder, synthetic_cache, epochs), cwd=ROOT,
                                  env=dict(os.environ, FERKIT_KILL_AT=kill), capture_output=True)
        if proc.returncode == 0:  # training finished before reaching this kill point
            break
        assert proc.returncode == -signal.SIGKILL, kill
        if (folder / "state.json").exists():
            # Restart without training further (--max-steps at the saved step): the start-up clean-up alone
            # must leave one best, one last, a log row per finished epoch, and nothing else.
            step = json.loads((folder / "state.json").read_text())["step"]
            run_script("train.py", *TRAIN, "--epochs", epochs, "--data", synthetic_cache, "--out", folder,
                       "--max-steps", step, check=0)
            only_committed_files(folder, committed(folder))
        state = committed(folder)
        assert state["best_accuracy"] >= best  # never goes down
        best = state["best_accuracy"]
    if not committed(folder).get("finished"):
        run_script("train.py", *TRAIN, "--epochs", epochs, "--data", synthetic_cache, "--out", folder, check=0)
    state = committed(folder)
    assert state["finished"] and state["epoch"] >= 1 and state["best_accuracy"] >= best
    only_committed_files(folder, state)
    # The best weights are the ones evaluate uses, and they score what state.json says on PublicTest.
    report = json.loads(run_script("evaluate.py", "--checkpoint", folder, "--data", synthetic_cache,
                                   "--split", "PublicTest", "--json", check=0).stdout)
    assert report["accuracy"] == pytest.approx(state["best_accuracy"], abs=1e-6)


def end_state(folder):
    """What a finished run leaves, less its timings: state.json, log rows, file names, every weight."""
    import numpy as np
    import tensorflow as tf
    state = json.loads((folder / "state.json").read_text())
    state["log"], rows = without_times(state["log"]), log_without_times(folder)
    names = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if not p.name.startswith("events.out"))
    weights = {which: {name: tf.train.load_checkpoint(str(folder / which)).get_tensor(name)
                       for name, _ in tf.train.list_variables(str(folder / which))} for which in ("best", "last")}
    return state, rows, names, {w: {k: np.asarray(v).tobytes() for k, v in d.items()} for w, d in weights.items()}


EPOCHS = 3  # 84 faces / 16: 5 steps an epoch


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, synthetic_cache):
    """end_state of a short run never stopped."""
    reference = tmp_path_factory.mktemp("uninterrupted") / "dnn"
    run_script(*train_args(reference, synthetic_cache, EPOCHS), check=0)
    return end_state(reference)


@pytest.mark.slow
@pytest.mark.parametrize("kill", ["scoring:2", "scoring:2:INT", "after_best:2", "after_last:1", "before_state:3",
                                  "after_state:2", "after_last:3", "random", "SIGTERM:0.1", "SIGTERM:0.4",
                                  "SIGINT:0.25"])
def test_every_interruption_resumes_to_the_uninterrupted_runs_end_state(tmp_path, synthetic_cache, uninterrupted,
                                                                         kill):
    """Killed (SIGKILL) or interrupted (Ctrl-C) at each step of the save sequence, or at a random
    moment inside an epoch, then the same command again: the same files, log and weights, to the bit,
    as a run that was never stopped (batch order, augmentation and dropout are functions of the step)."""
    folder = tmp_path / "dnn"
    command = train_command(folder, synthetic_cache, EPOCHS)
    if kill == "random":
        kill_after_first_commit(command, folder, 0.3)  # inside the second epoch's steps
    elif kill.startswith("SIG"):  # a signal that saves and stops, landing inside a step: the step counts
        name, delay = kill.split(":")
        proc = kill_after_first_commit(command, folder, float(delay), getattr(signal, name))
        assert proc.returncode in (130, 0), proc.stderr[-500:]
    else:
        proc = subprocess.run(command, cwd=ROOT, env=dict(os.environ, FERKIT_KILL_AT=kill), capture_output=True)
        assert proc.returncode == (130 if kill.endswith("INT") else -signal.SIGKILL), (kill, proc.stderr[-500:])
    run_script(*train_args(folder, synthetic_cache, EPOCHS), check=0)
    got = end_state(folder)
    assert got[:3] == uninterrupted[:3]
    for which in ("best", "last"):
        assert got[3][which].keys() == uninterrupted[3][which].keys()
        differing = [k for k in got[3][which] if got[3][which][k] != uninterrupted[3][which][k]]
        assert not differing, (which, differing[:3])


def test_finished_models_are_never_trained_over(tmp_path, synthetic_cache):
    shipped = tmp_path / "dnn"
    shutil.copytree(os.path.join(backends.PRETRAINED, "dnn"), shipped)
    before = {p: p.read_bytes() for p in shipped.rglob("*") if p.is_file()}
    proc = run_script("train.py", *TRAIN, "--data", synthetic_cache, "--out", shipped, "--max-steps", 20)
    assert proc.returncode == 2 and "holds a finished model" in proc.stderr and "--overwrite" in proc.stderr
    assert {p: p.read_bytes() for p in shipped.rglob("*") if p.is_file()} == before
    run_script("train.py", *TRAIN, "--epochs", 1, "--data", synthetic_cache, "--out", shipped,
               "--overwrite", check=0)
    assert not list(shipped.glob("eval_*"))  # the replaced model's reports went with it
    assert json.loads((shipped / "state.json").read_text())["finished"]
    proc = run_script("train.py", *TRAIN, "--epochs", 1, "--data", synthetic_cache, "--out", shipped)
    assert proc.returncode == 2 and "holds a finished model" in proc.stderr


def test_checkpoint_folders_can_be_moved_and_copied(tmp_path, synthetic_cache):
    first = tmp_path / "first"
    run_script("train.py", *TRAIN, "--epochs", 3, "--data", synthetic_cache, "--out", first,
               "--max-steps", 12, check=0)
    copy = tmp_path / "copy"
    shutil.copytree(first, copy)
    shutil.rmtree(first / "best")  # the original loses its weights: the copy must not be reading them
    report = json.loads(run_script("evaluate.py", "--checkpoint", copy, "--data", synthetic_cache, "--json", check=0).stdout)
    assert report["checkpoint"].startswith(str(copy))
    moved = tmp_path / "moved"
    shutil.move(copy, moved)
    proc = run_script("train.py", *TRAIN, "--epochs", 3, "--data", synthetic_cache, "--out", moved, check=0)
    assert "resuming from" in proc.stdout and "at step 12 " in proc.stdout
    assert [r["epoch"] for r in csv.DictReader(open(moved / "log.csv"))] == ["1", "2", "3"]


def test_reports_of_other_data_are_never_overwritten(tmp_path, tiny_checkpoint, synthetic_cache):
    folder = tmp_path / "ck"
    shutil.copytree(tiny_checkpoint, folder)
    run_script("evaluate.py", "--checkpoint", folder, "--data", synthetic_cache, check=0)
    first = json.loads((folder / "eval_PrivateTest.json").read_text())
    assert first["data"]["faces"] == 28 and len(first["data"]["fingerprint"]) == 16
    from ferkit import data
    images, labels = data.load_cache(synthetic_cache)["PrivateTest"]
    other = tmp_path / "other.npz"
    data.save_cache(other, {"PrivateTest": (images[:10], labels[:10])})
    proc = run_script("evaluate.py", "--checkpoint", folder, "--data", other, check=0)
    assert json.loads((folder / "eval_PrivateTest.json").read_text()) == first
    extra = [p.name for p in folder.glob("eval_PrivateTest-*.json")]
    assert len(extra) == 1 and "reports computed on other data are kept" in proc.stdout
    assert json.loads((folder / extra[0]).read_text())["data"]["faces"] == 10
    # A report that is not one of ours (a JSON list, a folder of that name) is kept, the new one beside it.
    for odd in (tmp_path / "list", tmp_path / "folder"):
        report = odd / "eval_PrivateTest.json"
        odd.mkdir()
        report.write_text("[]") if odd.name == "list" else report.mkdir()
        proc = run_script("evaluate.py", "--checkpoint", tiny_checkpoint, "--data", synthetic_cache, "--out", odd)
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
        assert (report.read_text() == "[]") if odd.name == "list" else report.is_dir()
        assert len(list(odd.glob("eval_PrivateTest-*.json"))) == 1


@pytest.fixture(scope="module")
def small_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("csv") / "fer2013.csv"
    labels = np.repeat(np.arange(7), 3)
    usages = ["Training"] * 14 + ["PublicTest"] * 7
    path.write_text("emotion,pixels,Usage\n" + "\n".join(csv_rows(labels, usages)) + "\n")
    return path


def few_rows_train_csv(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("emotion,pixels\n" + "\n".join(csv_rows([3])) + "\n")
    return path


# The regression table: (script, arguments, exit status, a phrase the one-line message must contain); {csv},
# {tmp}, {ckpt} are filled in. Every file in those folders must be there afterwards as it was, by checksum.
CASES = [
    ("train.py", "--arch dnn --data {csv} --epochs 0", 2, "--epochs must be at least 1"),
    ("train.py", "--arch dnn --data {csv} --epochs -3", 2, "--epochs must be at least 1"),
    ("train.py", "--arch dnn --data {csv} --batch-size 0", 2, "--batch-size must be at least 1"),
    ("train.py", "--arch dnn --data {csv} --batch-size -1", 2, "--batch-size must be at least 1"),
    ("train.py", "--arch dnn --data {csv} --max-steps -5", 2, "--max-steps must be at least 1"),
    ("train.py", "--arch dnn --data {csv} --lr -0.01", 2, "--lr must be a positive number"),
    ("train.py", "--arch dnn --data {csv} --lr nan", 2, "--lr must be a positive number"),
    ("train.py", "--arch dnn --data {csv} --seed -1", 2, "--seed must be in 0.."),
    ("train.py", "--arch dnn --data {csv} --set dropout=1.5", 2, "dropout=1.5: must be in [0, 1)"),
    ("train.py", "--arch acnn_alstm --data {csv} --set lstm_units=0", 2, "lstm_units=0: must be a whole number from 1"),
    ("train.py", "--arch acnn_alstm --data {csv} --set lstm_units=-4", 2, "lstm_units=-4: must be a whole number"),
    ("train.py", "--arch dnn --data {csv} --set x", 2, "expected NAME=VALUE"),
    ("train.py", "--arch resnet --data {csv}", 2, "invalid choice: 'resnet'"),
    ("train.py", "--arch dnn --data {csv} --batch-size 4 --out {csv}", 2, "is a file, not a folder"),
    ("train.py", "--arch dnn --data {csv} --batch-size 4 --out {csv}/sub", 2, "cannot create the folder"),
    ("train.py", "--arch dnn --data {few} --out {tmp}/few", 2, "too few to carve a validation split"),
    ("preprocess.py", "--input {csv} --out {tmp}", 2, "is a folder, not a file"),
    ("preprocess.py", "--input {csv} --out {csv}/sub/x.npz", 2, "is inside the input"),
    ("preprocess.py", "--input {tmp}/truncated.csv.gz --out {tmp}/x.npz", 2, "damaged or incomplete"),
    ("preprocess.py", "--input {tmp}/truncated.csv.gz --out {tmp}/x.npz --skip-bad", 2, "damaged or incomplete"),
    ("train.py", "--arch dnn --data {tmp}/truncated.csv.gz --out {tmp}/t", 2, "damaged or incomplete"),
    ("preprocess.py", "--input {tmp}/notes.npz --out {tmp}/x.npz", 2, "not a .npz cache"),
    ("preprocess.py", "--input {tmp}/utf16.csv --out {tmp}/x.npz", 2, "UTF-16 text"),
    ("evaluate.py", "--checkpoint {ckpt} --data {csv} --batch-size 0", 2, "--batch-size must be at least 1"),
    ("evaluate.py", "--checkpoint {ckpt} --data {csv} --split PrivateTest", 2, "no PrivateTest faces (it has Training, PublicTest)"),
    ("predict.py", "{csv} --checkpoint {ckpt} --annotate {csv}", 2, "is a file, not a folder"),
    ("predict.py", "/dev/zero --json", 1, "not a regular file (a device, pipe or socket)"),
    ("train.py", "--arch dnn --data {csv} --init-from {tmp}/nowhere --out {tmp}/t", 2,
     "nowhere is not a checkpoint folder written by train.py"),
    ("train.py", "--arch dnn --data {csv} --batch-size 4 --init-from {ckpt} --out {tmp}/t", 2,
     "fine-tune the same model"),
    ("train.py", "--arch dnn --data {csv} --distill 0.7 --out {tmp}/t", 2, "give --teacher NPZ too"),
    ("train.py", "--arch dnn --data {csv} --warmup-epochs 1e300 --out {tmp}/t", 2,
     "--warmup-epochs must be at most --epochs (30)"),
    ("train.py", "--arch dnn --data {csv} --lr 1e-320 --out {tmp}/t", 2, "--lr must be a positive number"),
]


@pytest.mark.parametrize("script, arguments, status, phrase", CASES, ids=[f"{c[0]} {c[1]}" for c in CASES])
def test_bad_options_and_input_give_one_line(tmp_path, small_csv, tiny_checkpoint, script, arguments, status, phrase):
    import gzip
    content = small_csv.read_bytes()
    (tmp_path / "truncated.csv.gz").write_bytes(gzip.compress(content)[:3000])
    (tmp_path / "notes.npz").write_text("these are notes\n")
    (tmp_path / "utf16.csv").write_bytes(content[:200].decode().encode("utf-16"))
    filled = arguments.format(csv=small_csv, tmp=tmp_path, ckpt=tiny_checkpoint, few=few_rows_train_csv(tmp_path))
    before = tree_digest(tmp_path), tree_digest(tiny_checkpoint), tree_digest(small_csv.parent)
    proc = run_script(script, *filled.split())
    assert proc.returncode == status, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr and phrase in lines[-1], proc.stderr
    assert len([l for l in lines if "error" in l.lower()]) == 1, proc.stderr  # one line, no library chatter
    # Nothing written, and every file there before still there, byte for byte (inputs and the checkpoint too).
    assert (tree_digest(tmp_path), tree_digest(tiny_checkpoint), tree_digest(small_csv.parent)) == before


def test_unknown_model_is_refused_before_tensorflow_loads(small_csv):
    start = time.perf_counter()
    proc = run_script("train.py", "--arch", "resnet", "--data", small_csv)
    assert proc.returncode == 2 and time.perf_counter() - start < 2.0


def test_killed_preprocess_leftovers_are_removed(tmp_path, small_csv):
    stale = tmp_path / ".ferkit-999999999-0a1b2c3d.tmp.npz"  # a PID no process has
    stale.write_bytes(b"half a cache")
    run_script("preprocess.py", "--input", small_csv, "--out", tmp_path / "cache.npz", check=0)
    assert sorted(os.listdir(tmp_path)) == ["cache.npz"]


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_any_bytes_as_a_csv_give_data_or_our_error(tmp_path_factory, data):
    """Random bytes, and a valid CSV cut, flipped or spliced anywhere: a result or a DataError, never anything else."""
    from ferkit import data as fer_data
    valid = ("emotion,pixels,Usage\n" + "\n".join(csv_rows([0, 3, 6], ["Training", "PublicTest", "PrivateTest"])) + "\n").encode()
    kind = data.draw(st.sampled_from(["random", "cut", "flip", "splice"]))
    if kind == "random":
        content = data.draw(st.binary(max_size=3000))
    elif kind == "cut":
        content = valid[:data.draw(st.integers(0, len(valid)))]
    elif kind == "flip":
        content = bytearray(valid)
        for i in data.draw(st.lists(st.integers(0, len(valid) - 1), min_size=1, max_size=5)):
            content[i] = data.draw(st.integers(0, 255))
        content = bytes(content)
    else:
        at = data.draw(st.integers(0, len(valid)))
        content = valid[:at] + data.draw(st.binary(max_size=50)) + valid[at:]
    folder = tmp_path_factory.mktemp("fuzz")
    path = folder / data.draw(st.sampled_from(["fer2013.csv", "train.csv", "x.csv.gz"]))
    path.write_bytes(content)
    try:
        loaded = fer_data.load(path)
    except fer_data.DataError as e:
        message = str(e)
        assert message.startswith(str(path)) and "\n" not in message
    else:
        for images, labels in loaded.splits.values():
            assert images.dtype == np.uint8 and images.shape[1:] == (48, 48, 1) and len(images) == len(labels)
            assert labels.min() >= 0 and labels.max() <= 6
    assert os.listdir(folder) == [path.name]  # nothing else written


@settings(max_examples=150, deadline=None, derandomize=True)
@given(st.data())
def test_any_bytes_as_an_image_give_a_picture_or_our_error(data):
    """Random bytes, and valid PNG/JPEG files cut or flipped anywhere: an image or a PhotoError."""
    import tempfile

    import cv2
    from ferkit.photos import PhotoError, read_image
    sample = cv2.resize(cv2.imread(os.path.join(ROOT, "samples", "astronaut.png")), (64, 64))
    valid = cv2.imencode(data.draw(st.sampled_from([".png", ".jpg", ".bmp"])), sample)[1].tobytes()
    kind = data.draw(st.sampled_from(["random", "cut", "flip"]))
    if kind == "random":
        content = data.draw(st.binary(max_size=2000))
    elif kind == "cut":
        content = valid[:data.draw(st.integers(0, len(valid)))]
    else:
        content = bytearray(valid)
        for i in data.draw(st.lists(st.integers(0, len(valid) - 1), min_size=1, max_size=4)):
            content[i] = data.draw(st.integers(0, 255))
        content = bytes(content)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "photo.img")
        with open(path, "wb") as f:
            f.write(content)
        try:
            image = read_image(path)
        except PhotoError as e:
            assert "\n" not in str(e) and str(e)
        else:
            assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        assert os.listdir(folder) == ["photo.img"]


@pytest.mark.parametrize("precision, damage, phrase", [
    ("float32", "truncate", "the weights file is damaged or incomplete"),
    ("float32", "delete", "the weights file (model.ckpt-"),
    ("float32", "hparam", "not a valid checkpoint config (acnn_alstm has no hyperparameter 'depth'"),
    # The shipped checkpoints are float16 (checkpoints.halve), read through another path than float32's.
    ("float16", "truncate", "the weights file is damaged or incomplete"),
    ("float16", "flip", "the weights file is damaged or incomplete"),
    ("float16", "junk index", "the weights file is damaged or incomplete"),
])
def test_damaged_checkpoints_are_named_not_tracebacks(tmp_path, tiny_checkpoint, synthetic_cache, precision, damage,
                                                      phrase):
    from ferkit import checkpoints
    folder = tmp_path / "ck"
    shutil.copytree(tiny_checkpoint, folder)
    if precision == "float16":
        shutil.rmtree(folder / "last")
        checkpoints.halve(str(folder))
    weights, = (folder / "best").glob("*.data-*")
    content = bytearray(weights.read_bytes())
    if damage == "truncate":
        weights.write_bytes(bytes(content[:1000 if precision == "float32" else len(content) // 2]))
    elif damage == "delete":
        weights.unlink()
    elif damage == "flip":
        content[len(content) // 2] ^= 0xFF
        weights.write_bytes(bytes(content))
    elif damage == "junk index":
        next((folder / "best").glob("*.index")).write_bytes(b"\x00junk" * 50)
    else:
        config = json.loads((folder / "config.json").read_text())
        config["hparams"]["depth"] = 3
        (folder / "config.json").write_text(json.dumps(config))
    sample = os.path.join(ROOT, "samples", "astronaut.png")
    for proc in (run_script("evaluate.py", "--checkpoint", folder, "--data", synthetic_cache),
                 run_script("predict.py", sample, "--checkpoint", folder),
                 run_script("export.py", "--checkpoint", folder, "--out", tmp_path / "x.tflite")):
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-800:]
        assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and phrase in proc.stderr, proc.stderr
    assert not (tmp_path / "x.tflite").exists()


def test_ctrl_c_while_scoring_is_scored_on_resume(tmp_path, synthetic_cache):
    """Ctrl-C during the end-of-epoch PublicTest scoring: the epoch is scored when the same command
    runs again, with the training loss and accuracy it had, as an uninterrupted run scores it."""
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    run_script("train.py", *TRAIN, "--epochs", 3, "--data", synthetic_cache, "--out", whole, check=0)
    env = dict(os.environ, FERKIT_KILL_AT="scoring:2:INT")
    proc = subprocess.run(train_command(cut, synthetic_cache, 3), cwd=ROOT, env=env, capture_output=True, text=True)
    assert proc.returncode == 130 and "interrupted: saved step 10" in proc.stdout, proc.stderr
    state = json.loads((cut / "state.json").read_text())
    assert state["epoch"] == 1 and state["step"] == 10 and state["partial"]["seen"] == 80
    proc = run_script("train.py", *TRAIN, "--epochs", 3, "--data", synthetic_cache, "--out", cut, check=0)
    assert "epoch 2:" in proc.stdout and "finished" in proc.stdout
    assert log_without_times(cut)[:2] == log_without_times(whole)[:2]
    assert [r["step"] for r in log_without_times(cut)] == ["5", "10", "15"]
    state = json.loads((cut / "state.json").read_text())
    assert state["finished"] and "partial" not in state and (cut / "curves.png").exists()


def test_missing_state_never_deletes_weights(tmp_path, tiny_checkpoint, synthetic_cache):
    folder = tmp_path / "copy"
    shutil.copytree(tiny_checkpoint, folder)
    (folder / "state.json").unlink()
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    proc = run_script("train.py", "--arch", "acnn_alstm", "--epochs", 2, "--batch-size", 16, "--data", synthetic_cache,
                      "--out", folder)
    assert proc.returncode == 2 and "state.json: missing, but" in proc.stderr and "nothing was changed" in proc.stderr
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before
    for junk in ("[1, 2]", '{"epoch": 1, '):  # a list, a truncated file: named, and nothing removed
        (folder / "state.json").write_text(junk)
        proc = run_script("train.py", "--arch", "acnn_alstm", "--epochs", 2, "--batch-size", 16, "--data",
                          synthetic_cache, "--out", folder)
        assert proc.returncode == 2 and "state.json: unreadable" in proc.stderr and "Traceback" not in proc.stderr
        assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file() and p.name != "state.json"} == \
               {p: b for p, b in before.items()}


def test_overwrite_keeps_the_old_model_until_the_new_one_has_best_weights(tmp_path, synthetic_cache):
    """A replacement that diverges, or is killed in its first epoch, leaves the old model as it was;
    one that gets best weights replaces it whole: weights, export and reports of the old one go."""
    folder = tmp_path / "dnn"
    shutil.copytree(os.path.join(backends.PRETRAINED, "dnn"), folder)
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    proc = run_script("train.py", *TRAIN, "--epochs", 1, "--optimizer", "sgd", "--lr", 1e4, "--warmup-epochs", 0,
                      "--label-smoothing", 0, "--data", synthetic_cache, "--out", folder, "--overwrite")
    assert proc.returncode == 2 and "error: loss became " in proc.stderr
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before
    env = dict(os.environ, FERKIT_KILL_AT="after_last:1")
    proc = subprocess.run(train_command(folder, synthetic_cache, 1) + ["--overwrite"], cwd=ROOT, env=env, capture_output=True)
    assert proc.returncode == -signal.SIGKILL
    # All as it was, but for the killed run's lock file (free, and taken over by the next run).
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file() and p.name != ".lock"} == before
    assert [n for n in os.listdir(tmp_path) if n.startswith(".ferkit-")]  # the killed run's folder, for now
    run_script("train.py", *TRAIN, "--epochs", 1, "--data", synthetic_cache, "--out", folder, "--overwrite",
               check=0)
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".ferkit-")]  # removed by the next run
    names = set(os.listdir(folder))
    assert {"best", "last", "state.json", "config.json", "log.csv", "curves.png"} <= names
    assert not names & {"model.tflite", ".lock"} and not [n for n in names if "eval_" in n]
    assert json.loads((folder / "config.json").read_text())["settings"]["data_size"] == 84


def test_a_second_run_into_the_same_folder_is_refused_and_a_dead_ones_lock_is_taken_over(tmp_path, synthetic_cache):
    folder = tmp_path / "ck"
    # --patience 400: the first run must still be training (not stopped early) when the others start.
    args = [*map(str, train_command(folder, synthetic_cache, 400)), "--patience", "400"]
    first = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (folder / "state.json").exists() and time.time() < deadline:
        time.sleep(0.1)
    second = run_script("train.py", *TRAIN, "--epochs", 400, "--patience", 400, "--data", synthetic_cache,
                        "--out", folder)
    assert second.returncode == 2 and f"another train.py (PID {first.pid}) is training into it" in second.stderr
    first.kill()
    first.communicate()
    state = json.loads((folder / "state.json").read_text())
    proc = run_script("train.py", *TRAIN, "--epochs", 400, "--patience", 400, "--data", synthetic_cache,
                      "--out", folder, "--max-steps", state["step"] + 1, check=0)
    assert f"at step {state['step']} " in proc.stdout and not (folder / ".lock").exists()


def png_claiming(width, height):
    """A tiny PNG whose header claims width x height pixels (a decompression bomb's shape)."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b"")


def test_hostile_images_are_one_line_each_and_the_rest_still_run(tmp_path):
    import cv2
    (tmp_path / "bomb.png").write_bytes(png_claiming(32000, 32000))
    for h, w in ((1, 500), (500, 1), (3, 3), (20, 2000)):  # too small for any face: "no face", never an error
        cv2.imwrite(str(tmp_path / f"tiny_{h}x{w}.png"), np.full((h, w, 3), 128, np.uint8))
    shutil.copy(os.path.join(ROOT, "samples", "astronaut.png"), tmp_path / "zz_face.png")
    proc = run_script("predict.py", tmp_path, "--json")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    entries = {os.path.basename(e["path"]): e for e in json.loads(proc.stdout)}
    assert "32000x32000 pixels, over the limit of 100,000,000" in entries["bomb.png"]["error"]
    assert all(entries[n]["faces"] == [] and entries[n]["error"] is None for n in entries if n.startswith("tiny"))
    assert entries["zz_face.png"]["faces"][0]["emotion"] == "happy"
    proc = run_script("predict.py", tmp_path / "bomb.png", "--max-pixels", 2_000_000_000)
    assert "over the limit" not in proc.stderr  # raised: it now fails as the broken file it is


@pytest.mark.parametrize("args, phrase", [
    (("preprocess.py", "--seed", "-1"), "--seed must be in 0..4294967295, got -1"),
    (("predict.py", "--camera", "9223372036854775808"), "--camera must be a camera index"),
    (("train.py", "--arch", "dnn", "--epochs", "0"), "--epochs must be at least 1"),
    (("evaluate.py", "--model", "dnn", "--split", "Nope"), "invalid choice: 'Nope'"),
    (("predict.py", "x.png", "--max-pixels", "0"), "--max-pixels must be at least 1"),
    (("predict.py", "x.png", "--min-score", "nan"), "--min-score must be in (0, 1], got nan"),
])
def test_option_errors_are_one_line(args, phrase):
    proc = run_script(*args)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("error: ") and phrase in proc.stderr and "--help" in proc.stderr


def test_a_closed_pipe_is_a_quiet_exit(tmp_path):
    """predict.py DIR | head -1: the reader leaves long before the writer is done."""
    for i in range(400):
        os.symlink(os.path.join(ROOT, "samples", "astronaut.png"), tmp_path / f"{i:03}.png")
    script = os.path.join(ROOT, "predict.py")
    for command in (f"{sys.executable} {script} {tmp_path} --no-detect | head -1",
                    f"{sys.executable} {script} {tmp_path} --no-detect --json | head -c 10"):
        proc = subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=ROOT, capture_output=True, text=True)
        assert proc.returncode == 0 and proc.stderr == "", (command, proc.stderr)


def test_a_truncated_config_is_named_and_overwrite_replaces_it(tmp_path, tiny_checkpoint, synthetic_cache):
    folder = tmp_path / "copy"
    shutil.copytree(tiny_checkpoint, folder)
    state = json.loads((folder / "state.json").read_text())
    (folder / "state.json").write_text(json.dumps(dict(state, finished=False, epoch=1)))  # a run to resume
    (folder / "config.json").write_text('{"model": "acnn_al')
    small = ("train.py", "--arch", "acnn_alstm", "--epochs", 2, "--batch-size", 16, "--data", synthetic_cache,
             "--out", folder)
    proc = run_script(*small)
    assert proc.returncode == 2 and "config.json: unreadable" in proc.stderr and "Traceback" not in proc.stderr
    run_script(*small, "--overwrite", check=0)
    assert json.loads((folder / "config.json").read_text())["model"] == "acnn_alstm"
    assert json.loads((folder / "state.json").read_text())["finished"]


def test_a_video_that_ends_early_is_an_error_saying_how_far_it_got(tmp_path):
    import cv2
    writer = cv2.VideoWriter(str(tmp_path / "whole.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 240))
    frame = cv2.resize(cv2.imread(os.path.join(ROOT, "samples", "astronaut.png")), (320, 240))
    for _ in range(60):
        writer.write(frame)
    writer.release()
    whole = (tmp_path / "whole.avi").read_bytes()
    (tmp_path / "cut.avi").write_bytes(whole[:len(whole) // 2])  # the header still says 60 frames
    proc = run_script("predict.py", "--video", tmp_path / "cut.avi", "--csv", tmp_path / "cut.csv")
    assert proc.returncode == 1 and "the video ended after 30 of its 60 frames" in proc.stderr
    assert len((tmp_path / "cut.csv").read_text().splitlines()) == 31  # a header and the 30 frames it had
    run_script("predict.py", "--video", tmp_path / "whole.avi", "--csv", tmp_path / "whole.csv", check=0)


def tree_digest(folder):
    """{relative path: sha256} of every file under folder (temporaries and all); a JSON report is
    hashed without its speed (faces_per_s), which differs from run to run."""
    import hashlib

    def content(p):
        if p.suffix != ".json":
            return p.read_bytes()
        try:
            report = json.loads(p.read_text())
        except (ValueError, RecursionError):  # not a report: its bytes
            return p.read_bytes()
        if not isinstance(report, dict):
            return p.read_bytes()
        report.pop("faces_per_s", None)
        return json.dumps(report, sort_keys=True).encode()
    return {str(p.relative_to(folder)): hashlib.sha256(content(p)).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def write_clip(path):
    """A 5-frame MJPG clip of the sample face, moving."""
    import cv2
    photo = cv2.resize(cv2.imread(os.path.join(ROOT, "samples", "astronaut.png")), (240, 240))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5, (400, 240))
    for k in range(5):
        frame = np.full((240, 400, 3), 60, np.uint8)
        frame[:, 30 * k:30 * k + 240] = photo
        writer.write(frame)
    writer.release()


@pytest.mark.slow
@pytest.mark.parametrize("command", ["preprocess", "evaluate", "export", "predict --video", "predict --annotate"])
def test_a_kill_at_any_file_write_then_the_same_command_gives_the_uninterrupted_result(
        tmp_path, small_csv, synthetic_cache, tiny_checkpoint, tiny_tflite, command):
    """Every file goes through ferkit.files (FERKIT_KILL_AT=write:K kills the command when its K-th
    file is complete but not yet in place).  For K = 1, 2, ... until the command runs through: the
    killed command's outputs, after the same command runs again, are those of a run never killed,
    file for file and byte for byte, with no temporary left."""
    import shutil
    inputs = tmp_path / "in"
    inputs.mkdir()
    shutil.copy(os.path.join(ROOT, "samples", "astronaut.png"), inputs / "a.png")
    shutil.copy(os.path.join(ROOT, "samples", "astronaut.png"), inputs / "b.png")
    write_clip(tmp_path / "clip.avi")
    arguments = {
        "preprocess": ["preprocess.py", "--input", small_csv, "--out", "{out}/cache.npz"],
        "evaluate": ["evaluate.py", "--checkpoint", tiny_tflite, "--data", synthetic_cache, "--tta", "--out", "{out}"],
        "export": ["export.py", "--checkpoint", tiny_checkpoint, "--out", "{out}/m.tflite", "--quantize", "none",
                   "--data", synthetic_cache],
        "predict --video": ["predict.py", "--video", tmp_path / "clip.avi", "--checkpoint", tiny_tflite,
                            "--csv", "{out}/emotions.csv", "--annotate", "{out}/ann"],
        "predict --annotate": ["predict.py", inputs, "--checkpoint", tiny_tflite, "--annotate", "{out}"],
    }[command]

    def run(out, kill=None):
        """The command into out; killed at its kill-th file in a process of its own."""
        out.mkdir(exist_ok=True)  # export.py writes into an existing folder only
        args = [str(a).replace("{out}", str(out)) for a in arguments]
        if kill is None:
            return run_script(*args)
        return subprocess.run([sys.executable, os.path.join(ROOT, args[0]), *args[1:]], cwd=ROOT,
                              env=dict(os.environ, FERKIT_KILL_AT=f"write:{kill}"), capture_output=True, text=True)

    reference = tmp_path / "reference"
    assert run(reference).returncode == 0
    expected = tree_digest(reference)
    assert expected and not any(".tmp" in name for name in expected)
    for kill in range(1, 20):
        out = tmp_path / f"killed{kill}"
        proc = run(out, kill)
        if proc.returncode == 0:  # fewer than `kill` files: it ran through
            assert tree_digest(out) == expected
            break
        assert proc.returncode == -signal.SIGKILL, proc.stderr[-500:]
        assert run(out).returncode == 0
        assert tree_digest(out) == expected, (command, kill)
    assert kill > 1, "the command wrote no file through ferkit.files"
