"""train.py end to end on a tiny synthetic set: files written, resume, refusals, seeding."""
import csv
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT, run_script

TRAIN = ("--arch", "dnn", "--epochs", 3, "--batch-size", 16)


def read_log(folder):
    with open(os.path.join(folder, "log.csv")) as f:
        return list(csv.DictReader(f))


def test_training_writes_checkpoints_logs_and_plot(tiny_checkpoint):
    folder = tiny_checkpoint
    config = json.loads((folder / "config.json").read_text())
    assert config["model"] == "acnn_alstm" and config["hparams"]["lstm_units"] == 128
    assert config["settings"]["epochs"] == 2 and config["settings"]["batch_size"] == 16
    assert [r["epoch"] for r in read_log(folder)] == ["1", "2"]
    for name in ("best/checkpoint", "last/checkpoint", "curves.png", "state.json"):
        assert (folder / name).exists(), name
    assert any(p.name.startswith("events.out.tfevents") for p in folder.iterdir())  # TensorBoard


def test_stop_and_resume_at_the_right_step(tmp_path, synthetic_cache):
    folder = tmp_path / "dnn"
    proc = run_script("train.py", *TRAIN, "--data", synthetic_cache, "--out", folder, "--max-steps", 7, check=0)
    assert "stopped at step 7" in proc.stdout and "a larger --max-steps (or none) goes on" in proc.stdout
    proc = run_script("train.py", *TRAIN, "--data", synthetic_cache, "--out", folder, check=0)
    # 84 faces / 16 = 5 steps per epoch: step 7 is epoch 2, step 2 of 5
    assert "resuming from" in proc.stdout and "at step 7 (epoch 2)" in proc.stdout
    log = read_log(folder)
    assert [r["epoch"] for r in log] == ["1", "2", "3"] and log[-1]["step"] == "15"
    assert "finished" in proc.stdout


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_and_sigterm_save_and_resume(tmp_path, synthetic_cache, how):
    folder = tmp_path / "dnn"
    args = [sys.executable, os.path.join(ROOT, "train.py"), "--model", "dnn", "--epochs", "400", "--patience", "400",
            "--batch-size", "16", "--data", str(synthetic_cache), "--out", str(folder)]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (folder / "state.json").exists() and time.time() < deadline:  # at least one epoch done
        time.sleep(0.2)
    proc.send_signal(how)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted: saved step" in out and "Traceback" not in err
    assert "note: --model is now --arch in train (--model dnn still works)" in err  # the old spelling
    saved = int(out.split("interrupted: saved step ")[1].split()[0])
    assert saved >= 5
    resumed = run_script("train.py", "--arch", "dnn", "--epochs", 400, "--batch-size", 16, "--data", synthetic_cache,
                         "--out", folder, "--max-steps", saved + 1, check=0)
    assert f"at step {saved} " in resumed.stdout and f"stopped at step {saved + 1}" in resumed.stdout


def test_refuses_a_folder_of_another_model(tmp_path, synthetic_cache):
    folder = tmp_path / "ck"
    run_script("train.py", *TRAIN, "--data", synthetic_cache, "--out", folder, "--max-steps", 1, check=0)
    before = (folder / "config.json").read_text()
    proc = run_script("train.py", "--arch", "cnn_lstm", "--data", synthetic_cache, "--out", folder)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"error: {folder} holds a dnn checkpoint, not cnn_lstm" in proc.stderr
    assert (folder / "config.json").read_text() == before
    proc = run_script("train.py", *TRAIN, "--lr", 0.1, "--data", synthetic_cache, "--out", folder)
    assert proc.returncode == 2 and "trained with other settings (lr: 0.001)" in proc.stderr


def test_resuming_on_other_data_of_the_same_size_is_refused(tmp_path, synthetic_cache):
    from conftest import balanced_labels, synthetic_faces
    from ferkit.data import load_cache, save_cache
    splits = load_cache(synthetic_cache)
    other = tmp_path / "other.npz"
    images, labels = splits["Training"]
    save_cache(other, {**splits, "Training": (synthetic_faces(balanced_labels(12), seed=99), labels)})
    folder = tmp_path / "dnn"
    run_script("train.py", *TRAIN, "--data", synthetic_cache, "--out", folder, "--max-steps", 2, check=0)
    config = (folder / "config.json").read_bytes()
    proc = run_script("train.py", *TRAIN, "--data", other, "--out", folder)
    assert proc.returncode == 2 and "trained with other settings (data_fingerprint: " in proc.stderr
    assert (folder / "config.json").read_bytes() == config  # not rewritten


def test_arch_is_required_once(tmp_path):
    proc = run_script("train.py", "--model", "dnn", "--arch", "acnn_alstm", "--out", tmp_path / "x")
    assert proc.returncode == 2 and "--model dnn and --arch acnn_alstm disagree" in proc.stderr
    proc = run_script("train.py", "--out", tmp_path / "x")
    assert proc.returncode == 2 and "--arch is required: one of acnn_alstm, cnn_alstm, cnn_lstm, dnn" in proc.stderr
    assert not (tmp_path / "x").exists()


def test_unknown_model_and_bad_override(synthetic_cache):
    proc = run_script("train.py", "--arch", "resnet", "--data", synthetic_cache)
    assert proc.returncode == 2 and "invalid choice: 'resnet'" in proc.stderr and "acnn_alstm" in proc.stderr
    proc = run_script("train.py", "--arch", "dnn", "--data", synthetic_cache, "--set", "depth=3")
    assert proc.returncode == 2 and "dnn has no hyperparameter 'depth'" in proc.stderr


def test_same_seed_same_first_epoch_loss(tmp_path, synthetic_cache):
    losses = []
    for run in ("a", "b"):
        run_script("train.py", *TRAIN, "--epochs", 1, "--seed", 3, "--data", synthetic_cache,
                   "--out", tmp_path / run, check=0)
        losses.append(read_log(tmp_path / run)[0]["train_loss"])
    assert losses[0] == losses[1]


def test_never_reads_private_test(tmp_path, synthetic_cache):
    import numpy as np
    with np.load(synthetic_cache) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["PrivateTest_images"] = np.zeros((3, 7, 7), np.float64)  # would break any code that used it
    broken = tmp_path / "broken_private.npz"
    np.savez(broken, **arrays)
    run_script("train.py", *TRAIN, "--epochs", 1, "--data", broken, "--out", tmp_path / "ck", check=0)


def test_nan_loss_stops_cleanly(tmp_path, synthetic_cache):
    folder = tmp_path / "dnn"
    proc = run_script("train.py", *TRAIN, "--optimizer", "sgd", "--lr", 1e4, "--warmup-epochs", 0, "--label-smoothing", 0, "--data",
                      synthetic_cache, "--out", folder)  # the largest --lr allowed diverges at once
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert re.search(r"error: loss became (nan|inf) at step", proc.stderr) and "probably too high: try --lr" in proc.stderr
    assert not (folder / "last").exists()  # no diverged weights saved


def test_sgd_with_nesterov_momentum(tmp_path, synthetic_cache):
    folder = tmp_path / "sgd"
    proc = run_script("train.py", *TRAIN, "--optimizer", "sgd", "--data", synthetic_cache, "--out", folder,
                      "--max-steps", 7, check=0)
    settings = json.loads((folder / "config.json").read_text())["settings"]
    assert settings["optimizer"] == "sgd" and settings["momentum"] == 0.9 and settings["lr"] == 0.05
    assert float(read_log(folder)[0]["lr"]) <= 0.05
    import tensorflow as tf
    slots = [name for name, _ in tf.train.list_variables(str(folder / "last"))]
    assert any(name.endswith("/Momentum") for name in slots) and not any("/Adam" in name for name in slots)
    # Resuming is SGD's alone: another optimizer is another run.
    proc = run_script("train.py", *TRAIN, "--data", synthetic_cache, "--out", folder)
    assert proc.returncode == 2 and "trained with other settings (optimizer, lr: sgd, 0.05)" in proc.stderr
    proc = run_script("train.py", *TRAIN, "--optimizer", "sgd", "--data", synthetic_cache, "--out", folder, check=0)
    assert "at step 7 (epoch 2)" in proc.stdout and "finished" in proc.stdout


def test_bad_momentum_is_refused_before_anything_is_written(tmp_path, synthetic_cache):
    proc = run_script("train.py", *TRAIN, "--optimizer", "sgd", "--momentum", 1, "--data", synthetic_cache,
                      "--out", tmp_path / "ck")
    assert proc.returncode == 2 and "--momentum must be in [0, 1), got 1.0" in proc.stderr
    assert not (tmp_path / "ck").exists()


def test_sgd_without_momentum_is_recorded_as_such(tmp_path, synthetic_cache):
    folder = tmp_path / "plain_sgd"
    run_script("train.py", *TRAIN, "--optimizer", "sgd", "--momentum", 0, "--data", synthetic_cache,
               "--out", folder, "--max-steps", 1, check=0)
    assert json.loads((folder / "config.json").read_text())["settings"]["momentum"] == 0.0


def test_cnn_hyperparameters_and_folders_older_than_them(tmp_path, synthetic_cache):
    small = ("--model", "acnn_alstm", "--epochs", 2, "--batch-size", 16, "--data", synthetic_cache)
    folder = tmp_path / "res"
    run_script("train.py", *small, "--set", "first_width=16", "--set", "residual_stages=2",
               "--out", folder, "--max-steps", 1, check=0)
    hparams = json.loads((folder / "config.json").read_text())["hparams"]
    assert (hparams["first_width"], hparams["residual_stages"]) == (16, 2)
    proc = run_script("train.py", *small, "--out", folder)
    assert proc.returncode == 2 and "trained with other settings (first_width, residual_stages: 16, 2)" in proc.stderr
    proc = run_script("train.py", *small, "--set", "residual_stages=5", "--out", tmp_path / "bad")
    assert proc.returncode == 2 and "residual_stages=5: must be a whole number from 0 to 4" in proc.stderr
    assert not (tmp_path / "bad").exists()
    # A folder written before the hyperparameters existed resumes as the default architecture.
    folder = tmp_path / "old"
    run_script("train.py", *small, "--out", folder, "--max-steps", 1, check=0)
    config = json.loads((folder / "config.json").read_text())
    del config["hparams"]["first_width"], config["hparams"]["residual_stages"]
    (folder / "config.json").write_text(json.dumps(config))
    proc = run_script("train.py", *small, "--out", folder, "--max-steps", 2, check=0)
    assert "at step 1 (epoch 1)" in proc.stdout and "stopped at step 2" in proc.stdout


def test_weight_average_is_scored_logged_and_saved_when_best(tmp_path, synthetic_cache):
    """--ema: each epoch's log row has the average's PublicTest accuracy; when it is best/, best/
    holds the averaged weights (not the raw ones of last/); the setting is recorded and a resume
    without it refused."""
    import numpy as np
    import tensorflow as tf
    folder = tmp_path / "ema"
    # decay 0.5 with lr 0.01: the average trails the raw weights visibly, and is well defined after 5 steps.
    # --max-steps 5: exactly one epoch (84 faces / 16), scored, then stopped unfinished.
    proc = run_script("train.py", *TRAIN, "--ema", 0.5, "--bf16", "--lr", 0.01, "--seed", 7, "--data", synthetic_cache,
                      "--out", folder, "--max-steps", 5, check=0)
    assert " average 0." in proc.stdout
    settings = json.loads((folder / "config.json").read_text())["settings"]
    assert settings["ema"] == 0.5 and settings["bf16"] is True
    log = read_log(folder)
    assert all(0 <= float(r["ema_val_accuracy"]) <= 1 for r in log)
    state = json.loads((folder / "state.json").read_text())
    best = max(max(float(r["val_accuracy"]), float(r["ema_val_accuracy"])) for r in log)
    assert abs(state["best_accuracy"] - best) < 1e-4
    last = tf.train.load_checkpoint(str(folder / "last"))
    raw, shadow = last.get_tensor("dense1/weights"), last.get_tensor("dense1/weights/ExponentialMovingAverage")
    assert not np.allclose(raw, shadow)  # the average is its own set of numbers, resumed with the rest
    # On seed 7 the average scores 16 of 28 PublicTest faces right after one epoch, the raw weights 12.
    assert state["best_is_average"] and state["best_step"] == state["step"] == 5
    best_weights = tf.train.load_checkpoint(str(folder / "best")).get_tensor("dense1/weights")
    np.testing.assert_allclose(best_weights, shadow, rtol=1e-6)
    assert not any("raw_copy" in name for name, _ in tf.train.list_variables(str(folder / "last")))
    proc = run_script("train.py", *TRAIN, "--lr", 0.01, "--seed", 7, "--bf16", "--data", synthetic_cache, "--out", folder)
    assert proc.returncode == 2 and "trained with other settings (ema: 0.5)" in proc.stderr
    proc = run_script("train.py", *TRAIN, "--ema", 0.5, "--bf16", "--lr", 0.01, "--seed", 7, "--data", synthetic_cache,
                      "--out", folder, check=0)
    assert "at step 5 (epoch 2)" in proc.stdout and "finished" in proc.stdout


def test_bad_ema_is_refused_before_anything_is_written(tmp_path, synthetic_cache):
    proc = run_script("train.py", *TRAIN, "--ema", 1, "--data", synthetic_cache, "--out", tmp_path / "ck")
    assert proc.returncode == 2 and "--ema must be a decay in [0, 1)" in proc.stderr
    assert not (tmp_path / "ck").exists()


def test_refit_trains_on_both_splits_and_keeps_the_last_epoch(tmp_path, synthetic_cache):
    """--refit: Training + PublicTest (84 + 28 faces, 7 steps of 16), every epoch becomes best/ whatever
    PublicTest says, patience plays no part; recorded in config.json; refused with an average of the weights."""
    folder = tmp_path / "refit"
    proc = run_script("train.py", *TRAIN, "--refit", "--patience", 1, "--lr", 0.05, "--data", synthetic_cache,
                      "--out", folder, check=0)
    assert "Training 112 faces, PublicTest 28; 7 steps/epoch" in proc.stdout
    settings = json.loads((folder / "config.json").read_text())["settings"]
    assert settings["refit"] is True and settings["data_size"] == 112
    state = json.loads((folder / "state.json").read_text())
    assert state["finished"] and state["best_step"] == state["step"] == 21 and state["best_epoch"] == 3
    assert [r["step"] for r in read_log(folder)] == ["7", "14", "21"] and proc.stdout.count("(best)") == 3
    proc = run_script("train.py", *TRAIN, "--refit", "--ema", 0.99, "--data", synthetic_cache,
                      "--out", tmp_path / "no")
    assert proc.returncode == 2 and "--refit takes neither --teacher" in proc.stderr and not (tmp_path / "no").exists()
