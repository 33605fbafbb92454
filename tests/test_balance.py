"""tools/balance_classes.py: logits - TAU x log(the learnt prior), chosen on PublicTest, folded into best/."""
import json

import numpy as np

from conftest import run_script
from ferkit import backends, data, ferplus
from ferkit.dataset import NUM_CLASSES


def votes_cache(tmp_path, synthetic_cache):
    """The synthetic cache with FER+ votes: each face's FER-2013 label wins, with noise votes beside it."""
    splits = data.load_cache(synthetic_cache)
    rng = np.random.default_rng(3)
    votes = {}
    for split, (_, labels) in splits.items():
        v = rng.integers(0, 3, (len(labels), 10)).astype(np.uint8)
        v[np.arange(len(labels)), np.array(ferplus.EMOTION_COLUMNS)[labels]] = 6
        v[::2, ferplus.VOTE_COLUMNS.index("neutral")] += 8  # a prior far from uniform, as FER+'s is
        votes[split] = v
    cache = tmp_path / "votes.npz"
    data.save_cache(cache, splits, ferplus=votes)
    return cache, splits, votes


def test_choose_then_fold_shifts_the_biases_by_the_learnt_prior_and_reruns_start_from_the_trained_ones(
        tmp_path, synthetic_cache):
    cache, splits, votes = votes_cache(tmp_path, synthetic_cache)
    folder = tmp_path / "ck"
    run_script("train.py", "--arch", "dnn", "--labels", "ferplus", "--data", cache, "--epochs", 1,
               "--batch-size", 16, "--out", folder, check=0)
    faces = splits["PublicTest"][0]
    before = backends.load(folder).predict(faces)

    proc = run_script("tools/balance_classes.py", "--checkpoint", folder, "--data", cache, "--choose", check=0)
    rows = [line for line in proc.stdout.splitlines() if line.startswith("  0.") or line.startswith("  1.")]
    assert len(rows) == 11 and "chosen: TAU " in proc.stdout
    assert json.loads((folder / "config.json").read_text()).get("balance") is None  # --choose writes nothing

    run_script("tools/balance_classes.py", "--checkpoint", folder, "--data", cache, "--tau", 0.5, check=0)
    balance = json.loads((folder / "config.json").read_text())["balance"]
    shares, _ = ferplus.vote_shares(votes["Training"])
    expected_prior = 0.9 * shares.mean(0) + 0.1 / NUM_CLASSES  # label smoothing 0.1, train.py's default
    np.testing.assert_allclose(balance["prior"], expected_prior, rtol=1e-5)
    assert balance["tau"] == 0.5
    after = backends.load(folder).predict(faces)
    # log p' - log p = -TAU log(prior) + a constant per face
    shift = np.log(after) - np.log(before)
    expected_shift = -0.5 * (np.log(expected_prior) - np.log(expected_prior[0]))
    assert np.abs(expected_shift).max() > 0.3
    np.testing.assert_allclose(shift - shift[:, :1], np.broadcast_to(expected_shift, shift.shape), atol=2e-3)

    # Again with the same TAU: the same weights (it starts from the trained biases, not the shifted ones);
    # with TAU 0: the model as trained.
    run_script("tools/balance_classes.py", "--checkpoint", folder, "--data", cache, "--tau", 0.5, check=0)
    np.testing.assert_allclose(backends.load(folder).predict(faces), after, atol=1e-6)
    run_script("tools/balance_classes.py", "--checkpoint", folder, "--data", cache, "--tau", 0, check=0)
    np.testing.assert_allclose(backends.load(folder).predict(faces), before, atol=1e-6)
    # --choose on a balanced folder scores the model as trained
    again = run_script("tools/balance_classes.py", "--checkpoint", folder, "--data", cache, "--choose", check=0)
    assert again.stdout.split("TAU   ")[1] == proc.stdout.split("TAU   ")[1]


def test_choose_compares_folders_and_plots_their_trade_offs(tmp_path, synthetic_cache):
    cache, _, _ = votes_cache(tmp_path, synthetic_cache)
    folders = [tmp_path / "a", tmp_path / "b"]
    for seed, folder in enumerate(folders):
        run_script("train.py", "--arch", "dnn", "--labels", "ferplus", "--data", cache, "--epochs", 1, "--seed", seed,
                   "--batch-size", 16, "--out", folder, check=0)
    png = tmp_path / "trade-off.png"
    proc = run_script("tools/balance_classes.py", "--checkpoint", *folders, "--data", cache, "--choose",
                      "--plot", png, check=0)
    assert proc.stdout.count("chosen: TAU ") == 2 and all(f"{f}: PublicTest" in proc.stdout for f in folders)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left
    # A folder that is not there fails before any is scored
    proc = run_script("tools/balance_classes.py", "--checkpoint", folders[0], tmp_path / "none", "--data", cache,
                      "--choose")
    assert proc.returncode == 2 and "no such file" in proc.stderr and "PublicTest" not in proc.stdout


def test_refusals_write_nothing(tmp_path, synthetic_cache, tiny_checkpoint):
    proc = run_script("tools/balance_classes.py", "--checkpoint", tiny_checkpoint, "--tau", -1)
    assert proc.returncode == 2 and "--tau must be from 0 to 2" in proc.stderr
    proc = run_script("tools/balance_classes.py", "--checkpoint", tmp_path / "none", "--choose")
    assert proc.returncode == 2 and "no such file" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    proc = run_script("tools/balance_classes.py", "--checkpoint", tiny_checkpoint, tiny_checkpoint, "--tau", 0.3)
    assert proc.returncode == 2 and "one folder at a time" in proc.stderr
    proc = run_script("tools/balance_classes.py", "--checkpoint", tiny_checkpoint, "--plot", tmp_path / "p.png",
                      "--tau", 0.3)
    assert proc.returncode == 2 and "add --choose" in proc.stderr
    proc = run_script("tools/balance_classes.py", "--checkpoint", tiny_checkpoint, "--choose",
                      "--plot", tmp_path / "missing" / "p.png")
    assert proc.returncode == 2 and "does not exist" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    proc = run_script("tools/balance_classes.py", "--checkpoint", tiny_checkpoint, "--choose", "--plot", tmp_path)
    assert proc.returncode == 2 and "is a folder" in proc.stderr
    assert not (tmp_path / "p.png").exists() and not (tmp_path / "missing").exists()
    unfinished = tmp_path / "unfinished"
    run_script("train.py", "--arch", "dnn", "--data", synthetic_cache, "--epochs", 2, "--batch-size", 16,
               "--max-steps", 3, "--out", unfinished, check=0)
    config = (unfinished / "config.json").read_text()
    proc = run_script("tools/balance_classes.py", "--checkpoint", unfinished, "--data", synthetic_cache, "--tau", 0.3)
    assert proc.returncode == 2 and "training has not finished" in proc.stderr
    assert (unfinished / "config.json").read_text() == config
