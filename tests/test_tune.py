"""ferkit tune (tune.py): recipe sweeps on Ray Tune, embedded or on a cluster, killed and resumed."""
import csv
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pyarrow.parquet as pq
import pytest

from conftest import REAL_CSV, ROOT, needs_real_data, run_script

pytestmark = pytest.mark.xdist_group("tune")  # Ray and TensorFlow in every trial: one sweep at a time per worker


@pytest.fixture(scope="module")
def real_slice(tmp_path_factory):
    """640 Training and 256 PublicTest faces of the real FER-2013, and no PrivateTest at all: a sweep that
    needed PrivateTest could not run on it."""
    from ferkit import data
    loaded = data.load(REAL_CSV, splits=("Training", "PublicTest")).splits
    path = tmp_path_factory.mktemp("real") / "slice.npz"
    np.savez(path, **{f"{s}_{k}": v[:n] for s, n in (("Training", 640), ("PublicTest", 256))
                      for k, v in zip(("images", "labels"), (loaded[s][0], np.eye(7, dtype=np.uint8)[loaded[s][1]]))})
    return path


def results(out):
    with open(out / "results.csv") as f:
        return list(csv.DictReader(f))


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@needs_real_data
def test_a_four_trial_sweep_of_the_dnn_on_real_faces(tmp_path, real_slice):
    out = tmp_path / "sweep"
    proc = run_script("tune.py", "--arch", "dnn", "--data", real_slice, "--grid", "lr=0.0005,0.001", "--seeds", "0,1",
                      "--epochs", 2, "--max-steps", 20, "--scheduler", "none", "--out", out, process=True)
    assert proc.returncode == 0, proc.stderr
    rows = results(out)
    trials = sorted(os.listdir(out / "trials"))
    assert len(rows) == 4 and sorted(r["trial"] for r in rows) == trials and len(trials) == 4
    assert {(r["lr"], r["seed"]) for r in rows} == {("0.0005", "0"), ("0.0005", "1"), ("0.001", "0"), ("0.001", "1")}
    accuracies = [float(r["best_val_accuracy"]) for r in rows]
    assert accuracies == sorted(accuracies, reverse=True) and all(0 < a < 1 for a in accuracies)  # best first
    assert all(r["epochs_run"] == "2" and r["ended"] == "finished" and float(r["wall_s"]) > 0 for r in rows)
    assert pq.read_table(out / "results.parquet").num_rows == 4
    assert (out / "curves.png").stat().st_size > 1000
    assert "refit the winner" in proc.stdout and "--refit" in proc.stdout
    for name in trials:  # ordinary run folders, with PublicTest's log and nothing of PrivateTest
        folder = out / "trials" / name
        assert (folder / "best" / "checkpoint").is_file() and (folder / "config.json").is_file()
        assert not any("PrivateTest" in p for p in os.listdir(folder))
    best = out / "trials" / rows[0]["trial"]
    report = run_script("evaluate.py", "--checkpoint", best, "--data", real_slice, "--split", "PublicTest", "--json")
    assert abs(json.loads(report.stdout)["accuracy"] - accuracies[0]) < 1e-3


@needs_real_data
def test_a_killed_sweep_run_again_does_not_redo_finished_trials(tmp_path, real_slice):
    out = tmp_path / "sweep"
    args = [sys.executable, os.path.join(ROOT, "tune.py"), "--arch", "dnn", "--data", str(real_slice),
            "--grid", "lr=0.0005,0.001", "--seeds", "0,1", "--epochs", "2", "--scheduler", "none",
            "--concurrent", "1", "--out", str(out)]
    proc = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    ended = {}
    while time.time() < deadline and proc.poll() is None:  # two trials ended: kill -9 the sweep
        try:
            ended = {k: v for k, v in json.loads((out / "status.json").read_text()).items() if v["final"]}
        except (OSError, ValueError):
            pass
        if len(ended) >= 2:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.2)
    proc.wait(timeout=60)
    assert len(ended) == 2 and proc.returncode == -signal.SIGKILL, "the sweep ended before it could be killed"
    before = {name: digest(out / "trials" / name / "state.json") for name in ended}
    again = run_script("tune.py", *args[2:], process=True, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "4 trials of dnn: 2 ended before, 2 to run" in again.stdout
    assert {name: digest(out / "trials" / name / "state.json") for name in ended} == before  # not trained again
    rows = results(out)
    assert len(rows) == 4 and all(r["ended"] == "finished" and r["epochs_run"] == "2" for r in rows)


@needs_real_data
def test_a_sweep_loses_a_node_and_still_finishes(tmp_path, real_slice):
    """Two nodes of one CPU each (Ray's own Cluster helper, on loopback); the second is removed once a trial
    has committed an epoch, and its trial is retried from its checkpoint on the first."""
    import ray
    from ray.cluster_utils import Cluster

    from ferkit import raynode, sweep
    ray.shutdown()
    raynode._loopback_only()  # or this process turns 127.0.0.1 into the network interface's address, where nothing listens
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "node_ip_address": "127.0.0.1"})
    out = tmp_path / "sweep"
    try:
        second = cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
        ray.init(address=cluster.address, logging_level="ERROR", log_to_driver=False)

        def remove_once_an_epoch_is_committed():
            deadline = time.time() + 300
            while time.time() < deadline:
                if (out / "trials").is_dir() and any((out / "trials" / n / "state.json").exists()
                                                     for n in os.listdir(out / "trials")):
                    return cluster.remove_node(second)
                time.sleep(0.05)

        thread = threading.Thread(target=remove_once_an_epoch_is_committed)
        thread.start()
        rows = sweep.run("dnn", sweep.Space(seeds=[0, 1]), out, epochs=4, scheduler="none", data=str(real_slice),
                         log=open(os.devnull, "w"))
        thread.join()
    finally:
        ray.shutdown()
        cluster.shutdown()
    assert len(rows) == 2 and all(r["ended"] == "finished" and r["epochs_run"] == 4 for r in rows), rows
    status = json.loads((out / "status.json").read_text())
    assert sum(v.get("retries", 0) for v in status.values()) >= 1, "the sweep ended before the node was removed"


def test_a_diverging_trial_is_marked_and_the_sweep_goes_on(tmp_path, synthetic_cache):
    out = tmp_path / "sweep"
    proc = run_script("tune.py", "--arch", "dnn", "--data", synthetic_cache, "--grid", "optimizer=sgd",
                      "--grid", "lr=10000,0.01", "--grid", "warmup_epochs=0", "--grid", "label_smoothing=0",
                      "--epochs", 3, "--batch-size", 16, "--scheduler", "none", "--out", out,
                      process=True)  # the largest --lr diverges at once
    assert proc.returncode == 0, proc.stderr
    ended = {r["lr"]: r["ended"] for r in results(out)}
    assert ended["0.01"] == "finished" and ended["10000.0"].startswith("diverged: loss became"), ended
    diverged = next(n for n in os.listdir(out / "trials") if "lr=10000" in n)
    assert not (out / "trials" / diverged / "last").exists()  # no diverged weights saved


@pytest.mark.parametrize("args, message", [
    (["--grid", "nope=1,2"], "nope: not a setting a sweep can vary"),
    (["--grid", "set.nope=1,2"], "set.nope: dnn has no hyperparameter 'nope'"),
    (["--grid", "lr=-1,0.001"], "--lr must be a positive number"),
    (["--grid", "lr="], "--grid lr=: expected NAME=V1,V2"),
    (["--grid", "epochs=two"], "epochs='two': not a int"),
    ([], "nothing to sweep"),
])
def test_bad_spaces_are_one_line_before_ray_starts(tmp_path, args, message):
    proc = run_script("tune.py", "--arch", "dnn", "--data", tmp_path / "none.npz", "--out", tmp_path / "s", *args)
    assert proc.returncode == 2 and message in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    assert not (tmp_path / "s").exists()  # refused before anything was written, and before Ray started


def test_another_space_for_the_same_out_is_refused(tmp_path):
    from ferkit import sweep
    out = tmp_path / "s"
    plan = {"arch": "dnn", "fixed": {"data": str(tmp_path / "d.npz")}, "max_steps": None, "trials": [{"name": "t000"}]}
    sweep.prepare(str(out), plan)
    before = (out / "sweep.json").read_text()
    with pytest.raises(sweep.SweepError, match="holds another sweep"):
        sweep.prepare(str(out), dict(plan, trials=[{"name": "t001"}]))
    assert (out / "sweep.json").read_text() == before
    sweep.prepare(str(out), plan)  # the same sweep: resumed


def test_spaces_make_the_same_trials_every_time():
    from ferkit import sweep
    space = sweep.Space(grid={"set.dropout": [0.3, 0.5]}, points=[{"epochs": 60}, {"cutmix": 1.0}],
                        random={"lr": {"loguniform": [1e-4, 1e-2]}}, samples=2, seeds=[0, 1])
    fixed = {"data": "x.npz"}
    first, second = sweep.trials("acnn_alstm", space, fixed), sweep.trials("acnn_alstm", space, fixed)
    assert first == second and len(first) == 4 * 2 * 2
    assert len({t["name"] for t in first}) == len(first)
    assert all(1e-4 <= t["settings"]["lr"] <= 1e-2 for t in first)
    assert {t["hparams"]["dropout"] for t in first if "set.dropout" in t["point"]} == {0.3, 0.5}
    assert sum(t["settings"].get("epochs") == 60 for t in first) == 4
