"""annotate.py on Ray, embedded with 2 CPUs (started once for the module): the same rows as predict.py,
reruns that skip what is done, error rows, a worker killed mid-run, and a node of a two-node cluster
removed mid-run."""
import csv
import json
import os
import shutil
import signal
import threading
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from conftest import ROOT, run_script

pytestmark = pytest.mark.xdist_group("ray")  # one Ray per test worker: these share it
ray = pytest.importorskip("ray")
pq = pytest.importorskip("pyarrow.parquet")

SAMPLE = os.path.join(ROOT, "samples", "astronaut.png")


@pytest.fixture(scope="module", autouse=True)
def embedded_ray():
    from ferkit.raynode import start_ray
    if not ray.is_initialized():
        start_ray(None, 2, verbose=False)  # what annotate.py starts: on loopback alone
    assert {node["NodeManagerAddress"] for node in ray.nodes()} == {"127.0.0.1"}
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A folder of photos (three with faces at other sizes, one not an image, one truncated) and a
    30-frame clip of a face moving."""
    folder = tmp_path_factory.mktemp("inputs")
    photo = cv2.imread(SAMPLE)
    for k, side in enumerate((512, 400, 640)):
        cv2.imwrite(str(folder / f"p{k}.jpg"), cv2.resize(photo, (side, side)))
    (folder / "notes.jpg").write_text("not a photo")
    (folder / "cut.png").write_bytes((folder / "p0.jpg").read_bytes()[:1] + cv2.imencode(".png", photo)[1].tobytes()[1:3000])
    writer = cv2.VideoWriter(str(folder / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (640, 480))
    face = cv2.resize(photo, (300, 300))
    for k in range(30):
        frame = np.full((480, 640, 3), 100, np.uint8)
        frame[90:390, 10 * k:10 * k + 300] = face
        writer.write(frame)
    writer.release()
    return folder


def faces_table(out):
    return pq.read_table(os.path.join(out, "faces")).to_pandas()


def test_rows_are_predicts_and_a_rerun_skips_what_is_done(inputs, tmp_path):
    out = tmp_path / "dataset"
    proc = run_script("annotate.py", inputs, "--out", out, "--workers", 2, "--batch", 2, "--segment-seconds", 1)
    assert proc.returncode == 1, proc.stderr  # two files could not be read
    assert "Traceback" not in proc.stderr and "Token authentication" not in proc.stderr
    faces = faces_table(out)
    errors = pq.read_table(os.path.join(out, "errors")).to_pandas()
    assert sorted(os.path.basename(s) for s in errors["source"]) == ["cut.png", "notes.jpg"]
    assert all("\n" not in e and e for e in errors["error"])
    # Photos: the faces predict.py --json gives, box for box, probabilities within 1e-4.
    printed = json.loads(run_script("predict.py", inputs, "--json").stdout)
    expected = {(os.path.basename(e["path"]), tuple(f["box"]), f["emotion"]): f for e in printed for f in e["faces"]}
    photo_rows = faces[faces["frame"].isna()]
    got = {(os.path.basename(r.source), (r.x, r.y, r.w, r.h), r.emotion): r for r in photo_rows.itertuples()}
    assert got.keys() == expected.keys() and len(got) == 3
    for key, row in got.items():
        for emotion, p in expected[key]["probabilities"].items():
            assert abs(getattr(row, emotion) - p) <= 1e-4
        assert list(row.landmarks) == [v for point in expected[key]["landmarks"] for v in point]
    # The video, in three segments of 10 frames: the rows of predict.py --video, frame for frame.
    run_script("predict.py", "--video", inputs / "clip.avi", "--csv", tmp_path / "v.csv", check=0)
    with open(tmp_path / "v.csv", newline="") as f:
        expected = {(int(r["frame"]), int(r["x"]), int(r["y"]), int(r["w"]), int(r["h"]), r["emotion"])
                    for r in csv.DictReader(f)}
    video_rows = faces[faces["frame"].notna()]
    got = {(int(r.frame), r.x, r.y, r.w, r.h, r.emotion) for r in video_rows.itertuples()}
    assert got == expected and len(got) >= 30 and set(video_rows["frame"]) == set(range(30))
    assert set(video_rows["track"] // 1_000_000) == {0, 1, 2}  # segment k's ids start at k * 1,000,000 + 1
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["photos"], summary["frames"], summary["faces"], summary["errors"]) == (5, 30, len(faces), 2)
    assert summary["shards"] == 6 and summary["this_run"]["shards"] == 6  # 3 photo batches, 3 segments
    # The same command again: nothing to do, nothing rewritten.
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.parquet")}
    again = run_script("annotate.py", inputs, "--out", out, "--workers", 2, "--batch", 2, "--segment-seconds", 1)
    assert again.returncode == 1 and "0 shards run, 6 already done" in again.stdout
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.parquet")} == before
    # Another model's dataset in the same folder is refused; --overwrite replaces it.
    other = run_script("annotate.py", inputs, "--out", out, "--model", "dnn", "--batch", 2, "--segment-seconds", 1)
    assert other.returncode == 2 and "holds a dataset made otherwise (model 'acnn_alstm_ferplus' -> 'dnn')" in other.stderr
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.parquet")} == before


def test_refusals_before_any_work(inputs, tmp_path):
    for args, phrase in ([[inputs, "--out", inputs / "out"], "is inside the input"],
                         [[tmp_path / "missing", "--out", tmp_path / "o"], "no such file or folder"],
                         [[inputs, "--out", tmp_path / "o", "--segment-seconds", 0], "--segment-seconds must be above 0"],
                         [[inputs, "--out", tmp_path / "o", "--model", "nope"], "no shipped model 'nope'"]):
        proc = run_script("annotate.py", *args)
        assert proc.returncode == 2 and phrase in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (inputs / "out").exists() and not (tmp_path / "o" / "faces").exists()


def many_photos(folder, n):
    photo = cv2.imread(SAMPLE)
    folder.mkdir()
    for k in range(n):
        cv2.imwrite(str(folder / f"{k:03d}.jpg"), cv2.resize(photo, (300 + 2 * k, 300 + 2 * k)))
    return folder


def exactly_once(out, n):
    faces = faces_table(out)
    assert sorted(faces["source"].map(os.path.basename)) == [f"{k:03d}.jpg" for k in range(n)]  # one face each
    assert pq.read_table(os.path.join(out, "errors")).num_rows == 0


def when_done(out, shards, action):
    """A thread that runs action() once `shards` shards are written under out/faces."""
    def wait():
        deadline = time.time() + 120
        while time.time() < deadline:
            if (out / "faces").exists() and len([n for n in os.listdir(out / "faces") if n.endswith(".parquet")]) >= shards:
                return action()
            time.sleep(0.02)
    thread = threading.Thread(target=wait)
    thread.start()
    return thread


def test_a_worker_killed_mid_run_loses_nothing(tmp_path):
    from ferkit.annotate import ACTOR_PREFIX
    folder = many_photos(tmp_path / "photos", 120)
    out = tmp_path / "dataset"

    def kill_one():
        names = [n["name"] if isinstance(n, dict) else n for n in ray.util.list_named_actors()]
        pid = ray.get(ray.get_actor(next(n for n in names if n.startswith(ACTOR_PREFIX))).pid.remote())
        os.kill(pid, signal.SIGKILL)

    thread = when_done(out, 1, kill_one)
    proc = run_script("annotate.py", folder, "--out", out, "--workers", 2, "--batch", 2, check=0)
    thread.join()
    exactly_once(out, 120)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["this_run"]["workers_lost"] == 1, "the run ended before the worker was killed"
    assert summary["photos"] == 120 and summary["this_run"]["workers_at_end"] == 2  # replaced: its CPU was free
    assert "60 shards run" in proc.stdout


def test_a_node_removed_mid_run_loses_nothing(tmp_path):
    """Two nodes of one CPU each (Ray's own Cluster helper, on this machine); the second is removed
    once a shard is done, and the run finishes on the first."""
    from ray.cluster_utils import Cluster
    from ferkit.annotate import Job, run
    from ferkit import backends, raynode
    ray.shutdown()
    raynode._loopback_only()  # or this process turns 127.0.0.1 into the network interface's address, where nothing listens
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "node_ip_address": "127.0.0.1"})
    try:
        second = cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
        ray.init(address=cluster.address, logging_level="ERROR", log_to_driver=False)
        folder = many_photos(tmp_path / "photos", 120)
        out = tmp_path / "dataset"
        (out / "faces").mkdir(parents=True)
        (out / "errors").mkdir()
        photos = sorted(str(p) for p in folder.iterdir())
        job = Job(photos, [], str(out), os.path.abspath(backends.resolve(None, "acnn_alstm_ferplus")), "acnn_alstm_ferplus",
                  batch=2)
        thread = when_done(out, 1, lambda: cluster.remove_node(second))
        summary = run(job, workers=2, progress=False)
        thread.join()
        exactly_once(out, 120)
        assert summary["photos"] == 120 and summary["this_run"]["shards"] == 60
        assert summary["this_run"]["workers_lost"] == 1, "the run ended before the node was removed"
        assert summary["this_run"]["workers_at_end"] == 1  # the removed node's worker was not replaced: no CPU for it
    finally:
        ray.shutdown()
        cluster.shutdown()


def rows_of(out):
    """The dataset's face rows as comparable tuples (source, frame, face, width, emotion), sorted."""
    faces = faces_table(out)
    return sorted(zip(faces["source"], faces["frame"].fillna(-1), faces["face"], faces["w"], faces["emotion"]))


def test_damaged_or_foreign_shards_are_redone_and_changed_inputs_match_a_fresh_run(tmp_path):
    """Shards that do not read back as what they wrote are redone, with a note; after inputs are added,
    removed, renamed or edited, a rerun's dataset holds exactly what a fresh run's on them holds."""
    folder = many_photos(tmp_path / "photos", 6)
    out = tmp_path / "dataset"
    run = lambda: run_script("annotate.py", folder, "--out", out, "--workers", 1, "--batch", 2, check=0)  # noqa: E731
    run()
    names = sorted(os.listdir(out / "faces"))
    assert len(names) == 3
    first, second, third = (out / "faces" / n for n in names)
    first.write_bytes(first.read_bytes()[:100])                   # truncated
    second.write_bytes(third.read_bytes())                        # another shard's file under its name
    table = pq.read_table(third)
    pq.write_table(table.slice(0, 0).replace_schema_metadata(table.schema.metadata), third)  # its rows deleted
    proc = run()
    assert proc.stderr.count("is redone") == 3 and "Traceback" not in proc.stderr, proc.stderr
    exactly_once(out, 6)
    # Inputs change: one edited (another size), one removed, one renamed, one added.
    cv2.imwrite(str(folder / "000.jpg"), cv2.resize(cv2.imread(SAMPLE), (500, 500)))
    os.remove(folder / "001.jpg")
    os.rename(folder / "002.jpg", folder / "010.jpg")
    cv2.imwrite(str(folder / "011.jpg"), cv2.resize(cv2.imread(SAMPLE), (420, 420)))
    proc = run()
    assert "shards of inputs that changed or are no longer given were removed" in proc.stderr, proc.stderr
    fresh = tmp_path / "fresh"
    run_script("annotate.py", folder, "--out", fresh, "--workers", 1, "--batch", 2, check=0)
    assert rows_of(out) == rows_of(fresh)
    assert sorted(os.listdir(out / "faces")) == sorted(os.listdir(fresh / "faces"))


def test_names_that_are_not_utf8_are_rows_with_escapes(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(SAMPLE, os.path.join(os.fsencode(folder), b"caf\xe9.png"))
    shutil.copy(SAMPLE, folder / "ok.png")
    out = tmp_path / "dataset"
    proc = run_script("annotate.py", folder, "--out", out, "--workers", 1)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert sorted(os.path.basename(s) for s in faces_table(out)["source"]) == ["caf\\xe9.png", "ok.png"]


def test_without_address_it_runs_on_a_ray_of_its_own_whatever_ray_address_says(tmp_path, monkeypatch):
    """RAY_ADDRESS (or a `ray start` cluster on this machine) made ray.init join that cluster, and then
    refuse the CPU count we give an embedded Ray: the run died with a traceback."""
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")  # nothing listens there
    folder = many_photos(tmp_path / "photos", 2)
    out = tmp_path / "dataset"
    proc = run_script("annotate.py", folder, "--out", out, "--workers", 1, process=True)  # Ray not yet started
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert "Ray on this machine" in proc.stdout + proc.stderr
    assert len(faces_table(out)) == 2


def _descendants(root):
    """{pid: start time} of root's descendants now, from /proc."""
    table = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            table[int(pid)] = (int(fields[1]), fields[19])
        except (OSError, IndexError):
            pass
    found, frontier = {}, {root}
    while frontier:
        frontier = {p for p, (parent, _) in table.items() if parent in frontier and p not in found}
        found.update((p, table[p][1]) for p in frontier)
    return found


def _still_running(processes):
    alive = []
    for pid, start in processes.items():
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                if f.read().rsplit(b")", 1)[1].split()[19] == start:
                    alive.append(pid)
        except OSError:
            pass
    return alive


def test_a_killed_driver_takes_embedded_ray_with_it(tmp_path):
    """SIGKILL to annotate.py while its embedded Ray works: within seconds none of the processes it had
    started is left (Ray's agents used to live on, orphaned, for a minute or more)."""
    folder = many_photos(tmp_path / "photos", 40)
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "annotate.py"), str(folder), "--out",
                             str(tmp_path / "dataset"), "--workers", "1", "--batch", "1"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while not (tmp_path / "dataset" / "faces").is_dir() or not os.listdir(tmp_path / "dataset" / "faces"):
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.1)
    started = _descendants(proc.pid)
    names = [open(f"/proc/{p}/comm").read().strip() for p in _still_running(started)]
    assert "raylet" in names and any(n.startswith("ray::") for n in names), names
    proc.kill()
    proc.wait()
    deadline = time.time() + 15
    while _still_running(started) and time.time() < deadline:
        time.sleep(0.2)
    assert _still_running(started) == []
