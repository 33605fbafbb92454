"""Video per person: tracks through a crossing and a gap, smoothing, the summary, the timeline, and an
annotated H.264 file with every source frame; the API and predict.py give the same rows."""
import csv
import json
import math
import os

import cv2
import numpy as np
import pytest

from conftest import ROOT, run_script
from ferkit import video
from ferkit.dataset import EMOTIONS

SAMPLE = os.path.join(ROOT, "samples", "astronaut.png")


def two_faces():
    """Two different people's faces, 150x150: the sample's, and matplotlib's portrait of Grace Hopper."""
    from matplotlib import cbook
    first = cv2.resize(cv2.imread(SAMPLE)[40:240, 130:330], (150, 150))
    second = cv2.resize(cv2.imread(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))[30:330, 60:360],
                        (150, 150))
    return first, second


def face_centres(patches):
    """Where in each 150x150 patch its face's box is centred, found by YuNet on the patch alone."""
    from ferkit.detectors import make_detector
    detector, centres = make_detector("yunet"), []
    for patch in patches:
        canvas = np.full((480, 640, 3), 120, np.uint8)
        canvas[100:250, 200:350] = patch
        x, y, w, h = detector.detect(canvas)[0].box
        centres.append((x + w / 2 - 200, y + h / 2 - 100))
    return centres


def crossing_clip(path, frames=60, blank=(), fps=30):
    """The two faces moving across each other in the same band (the first passes in front, hiding the
    second), frames listed in `blank` with neither. -> per frame, the centres {person: (x, y)} of the
    faces shown, to tell which person a detection is."""
    first, second = two_faces()
    (ax, ay), (bx, by) = face_centres([first, second])
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (640, 480))
    truth = []
    for k in range(frames):
        frame = np.full((480, 640, 3), 120, np.uint8)
        xa = round(20 + 450 * k / (frames - 1))
        xb = round(470 - 450 * k / (frames - 1))
        shown = {}
        if k not in blank:
            frame[150:300, xb:xb + 150] = second
            frame[170:320, xa:xa + 150] = first
            shown = {"first": (xa + ax, 170 + ay), "second": (xb + bx, 150 + by)}
        writer.write(frame)
        truth.append(shown)
    writer.release()
    return truth


def person_of(face, shown):
    """Which person a detected face is: the shown centre nearest the box's."""
    x, y, w, h = face["box"]
    return min(shown, key=lambda p: math.hypot(x + w / 2 - shown[p][0], y + h / 2 - shown[p][1]))


@pytest.fixture(scope="module")
def recognizer():
    from ferkit import Recognizer
    return Recognizer()


def test_each_person_keeps_one_id_through_a_crossing(recognizer, tmp_path):
    truth = crossing_clip(tmp_path / "cross.avi")
    records = list(recognizer.video(str(tmp_path / "cross.avi")))
    assert len(records) == 60
    ids = {"first": [], "second": []}
    people_of = {}
    for record in records:
        for face in record["faces"]:
            person = person_of(face, truth[record["frame"]])
            ids[person].append(face["track"])
            people_of.setdefault(face["track"], set()).add(person)
    assert len(ids["first"]) > 50 and len(ids["second"]) > 30  # the one behind is hidden while they cross
    for person, seen in ids.items():  # at most one switch per crossing
        switches = sum(a != b for a, b in zip(seen, seen[1:]))
        assert switches <= 1, (person, seen)
    assert all(len(people) == 1 for people in people_of.values()), people_of  # no track made of both


def test_a_gap_of_missed_frames_keeps_the_ids(recognizer, tmp_path):
    crossing_clip(tmp_path / "gap.avi", frames=60, blank=range(5, 12))  # 7 frames (0.23 s) with no face
    records = list(recognizer.video(str(tmp_path / "gap.avi")))
    before = sorted(f["track"] for r in records[:5] for f in r["faces"])
    after = sorted(f["track"] for r in records[12:17] for f in r["faces"])
    assert all(not r["faces"] for r in records[5:12])
    assert before == after == [1] * 5 + [2] * 5  # both people, before and after the gap


def test_tracker_ids_are_unique_and_a_lost_track_ends():
    tracker = video.Tracker(max_gap=0.5)
    assert tracker.update([(0, 0, 50, 50), (300, 0, 50, 50)], 0.0) == [1, 2]
    assert tracker.update([(310, 0, 50, 50), (10, 0, 50, 50)], 0.1) == [2, 1]  # matched by place, not order
    assert tracker.update([(40, 0, 50, 50)], 0.4) == [1]  # predicted forward at its velocity (100 px/s)
    assert tracker.update([(330, 0, 50, 50)], 1.0) == [3]  # track 2 unseen for 0.9 s: ended; a new id
    assert tracker.update([(700, 400, 50, 50)], 1.1) == [4]  # too far from every track: a new person


def test_smoothing_is_a_time_weighted_average():
    happy, sad = np.eye(7)[3], np.eye(7)[4]
    smoother = video.Smoother(0.5)
    np.testing.assert_allclose(smoother.update(1, happy, 0.0), happy)  # a new track starts at its first frame
    after = smoother.update(1, sad, 0.5)  # one time constant later: the old average keeps exp(-1)
    np.testing.assert_allclose(after, math.exp(-1) * happy + (1 - math.exp(-1)) * sad)
    # The same seconds in two steps forget as much as in one: the frame rate does not change the average.
    twice = video.Smoother(0.5)
    twice.update(1, happy, 0.0)
    twice.update(1, sad, 0.25)
    np.testing.assert_allclose(twice.update(1, sad, 0.5), after)
    assert video.Smoother(0.5).update(2, sad, 3.0).tolist() == sad.tolist()  # tracks are apart
    off = video.Smoother(0)
    off.update(1, happy, 0.0)
    np.testing.assert_allclose(off.update(1, sad, 0.1), sad)


def test_one_blink_does_not_flip_the_smoothed_label():
    smoother = video.Smoother(0.3)
    labels = []
    for k in range(30):  # 30 fps: happy, one frame of surprise, happy again
        p = np.eye(7)[5] if k == 15 else np.eye(7)[3] * 0.9 + 0.1 / 7
        labels.append(EMOTIONS[int(np.argmax(smoother.update(1, p, k / 30)))])
    assert set(labels) == {"happy"}


def test_cli_rows_summary_timeline_and_annotated_video(recognizer, tmp_path):
    crossing_clip(tmp_path / "cross.avi", frames=45)
    out = tmp_path / "out" / "emotions.csv"
    proc = run_script("predict.py", "--video", tmp_path / "cross.avi", "--csv", out, "--every", 3,
                      "--annotate", tmp_path / "ann", check=0)
    # The API gives the same rows as the CSV, and the same summary.
    records = list(recognizer.video(str(tmp_path / "cross.avi"), every=3))
    assert len(records) == 15
    with open(out, newline="") as f:
        written = list(csv.reader(f))
    assert written[0] == video.COLUMNS
    assert written[1:] == [video.csv_cells(r) for r in video.rows(records)]
    frame = video.dataframe(records)
    assert list(frame.columns) == video.COLUMNS and len(frame) == len(written) - 1
    summary = json.loads((tmp_path / "out" / "emotions.summary.json").read_text())
    assert summary["tracks"] == video.summary(records, 3 / 30)
    for track in summary["tracks"]:
        assert abs(sum(track["shares"].values()) - 1) < 1e-3 and track["dominant"] in EMOTIONS
        assert f"{track['track']:>5} {track['seconds']:>9.1f}s" in proc.stdout
    timeline = cv2.imread(str(tmp_path / "out" / "emotions.timeline.png"))
    assert timeline is not None and timeline.shape[0] > 200
    # Every source frame at the source rate, in a codec browsers play; labels held between classified frames.
    import av
    with av.open(str(tmp_path / "ann" / "annotated.mp4")) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
        assert stream.average_rate == 30
        decoded = [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]
    assert len(decoded) == 45 and decoded[0].shape == (480, 640, 3)
    assert all((d[..., 1] > 150).sum() > 300 for d in decoded[:6])  # the green boxes and labels, on every frame


def test_video_alone_prints_the_summary(tmp_path):
    crossing_clip(tmp_path / "c.avi", frames=15)
    proc = run_script("predict.py", "--video", tmp_path / "c.avi", check=0)
    lines = proc.stdout.splitlines()
    assert lines[0].split()[:3] == ["track", "on", "screen"] and len(lines) >= 2
    assert "15 frames read, 15 classified" in proc.stderr and sorted(os.listdir(tmp_path)) == ["c.avi"]


def test_outputs_that_would_replace_the_input_are_refused(tmp_path):
    crossing_clip(tmp_path / "c.avi", frames=5)
    before = (tmp_path / "c.avi").read_bytes()
    for args in (["--csv", tmp_path / "c.avi"], ["--timeline", tmp_path / "c.avi"]):
        proc = run_script("predict.py", "--video", tmp_path / "c.avi", *args)
        assert proc.returncode == 2 and f"is the input {tmp_path / 'c.avi'}" in proc.stderr, proc.stderr
    assert (tmp_path / "c.avi").read_bytes() == before
    proc = run_script("predict.py", "--video", tmp_path / "c.avi", "--smooth", "nan")
    assert proc.returncode == 2 and "--smooth must be" in proc.stderr
    proc = run_script("predict.py", SAMPLE, "--timeline", tmp_path / "t.png")
    assert proc.returncode == 2 and "apply to --video and --camera only" in proc.stderr


def test_api_errors_name_the_file(recognizer, tmp_path):
    (tmp_path / "notes.txt").write_text("not a video")
    with pytest.raises(video.VideoError, match="notes.txt: cannot read it as a video"):
        recognizer.video(str(tmp_path / "notes.txt"))
    with pytest.raises(video.VideoError, match="no such video file"):
        recognizer.video(str(tmp_path / "missing.mp4"))


def test_between_full_searches_faces_are_searched_near_where_they_were(recognizer, tmp_path):
    """A face that comes into view between full searches is found at the next one (frame 15 at 30 fps),
    the face already there in every frame; a segment that starts on a full search's frame (as
    annotate.py's do) finds exactly what the whole video finds from there."""
    first, second = two_faces()
    path = tmp_path / "arrives.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (640, 480))
    for k in range(40):
        frame = np.full((480, 640, 3), 120, np.uint8)
        frame[150:300, 40 + 2 * k:190 + 2 * k] = first
        if k >= 3:  # the second person steps in at frame 3, far from the first
            frame[150:300, 440:590] = second
        writer.write(frame)
    writer.release()
    assert video.full_search_period(30) == 15 and video.full_search_period(30, every=4) == 16
    records = list(recognizer.video(str(path)))
    counts = [len(r["faces"]) for r in records]
    assert counts[:15] == [1] * 15 and counts[15:] == [2] * 25  # found at frame 15, not before
    from ferkit.detectors import make_detector
    detector = make_detector("yunet")
    assert len(detector.detect(cv2.VideoCapture(str(path)).read()[1])) == 1
    # detect_near: around the first face only, so the second is not looked for
    capture = cv2.VideoCapture(str(path))
    for _ in range(5):
        ok, frame = capture.read()
    capture.release()
    whole = detector.detect(frame)
    near = detector.detect_near(frame, [whole[-1].box, whole[-1].box])  # asked twice: found once
    assert len(whole) == 2 and len(near) == 1
    assert video.Tracker()._cost({"box": whole[-1].box, "time": 0, "size": whole[-1].box[2], "velocity": (0, 0)},
                                 near[0].box, 0) < 0.15
    assert detector.detect_near(frame, [(300, 20, 60, 60)]) == []  # nothing there
    # A segment from frame 15 (annotate.py's shards): the same boxes and emotions as the whole video's
    capture, fps, total = video.open_capture(str(path), 15)
    segment = list(video.Video(recognizer, capture, fps, total, start=15))
    assert [(r["frame"], [(f["box"], f["emotion"]) for f in r["faces"]]) for r in segment] == \
           [(r["frame"], [(f["box"], f["emotion"]) for f in r["faces"]]) for r in records[15:]]


def test_files_are_read_ahead_and_cameras_frame_by_frame(recognizer, tmp_path):
    """A file's frames are decoded by a thread a few frames ahead and classified in batches; that thread
    ends when the caller stops early.  read_ahead=False (annotate.py's one-CPU workers) decodes in the
    caller's thread.  live=True (a camera) answers each frame before reading the next."""
    import threading

    class Counting:
        def __init__(self, capture):
            self.capture, self.reads = capture, 0

        def read(self):
            self.reads += 1
            return self.capture.read()

        def get(self, prop):
            return self.capture.get(prop)

        def release(self):
            self.capture.release()

    crossing_clip(tmp_path / "clip.avi", frames=30)
    def reader_running():
        return any(t.name == "ferkit-video-reader" for t in threading.enumerate())

    for live, ahead in ((True, True), (False, True), (False, False)):
        capture = Counting(cv2.VideoCapture(str(tmp_path / "clip.avi")))
        stream = video.Video(recognizer, capture, 30.0, 30, live=live, read_ahead=ahead)
        records = iter(stream)
        first = next(records)
        assert first["frame"] == 0 and len(first["faces"]) == 2
        if live:
            assert capture.reads == 1 and not reader_running()
        elif ahead:
            assert capture.reads > video.BATCH_FRAMES and reader_running()  # the batch, and the reader ahead
        else:
            assert capture.reads == video.BATCH_FRAMES and not reader_running()
        records.close()  # the caller stops early
        assert not reader_running()
        stream.close()


def test_tracks_follow_a_face_across_skipped_frames(tmp_path, recognizer):
    """--every 11 at 10 frames/s classifies a frame every 1.1 s, longer than a track's usual gap:
    one face moving slowly is still one person."""
    photo = cv2.resize(cv2.imread(SAMPLE), (200, 200))
    writer = cv2.VideoWriter(str(tmp_path / "slow.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (480, 240))
    for k in range(67):
        frame = np.full((240, 480, 3), 60, np.uint8)
        frame[20:220, 2 * k:2 * k + 200] = photo
        writer.write(frame)
    writer.release()
    records = [r for r in recognizer.video(str(tmp_path / "slow.avi"), every=11)]
    tracks = {f["track"] for r in records for f in r["faces"]}
    assert len(records) == 7 and tracks == {1}, tracks


def variable_rate_clip(path, times_ms):
    """An H.264 file whose frames are shown at `times_ms` (milliseconds, uneven), each a flat grey."""
    import fractions

    import av
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        stream.time_base = stream.codec_context.time_base = fractions.Fraction(1, 1000)
        for i, t in enumerate(times_ms):
            frame = av.VideoFrame.from_ndarray(np.full((120, 160, 3), 30 * i, np.uint8), format="bgr24")
            frame.pts, frame.time_base = t, fractions.Fraction(1, 1000)
            out.mux(stream.encode(frame))
        out.mux(stream.encode())


@pytest.mark.parametrize("container", ["mkv", "mp4"])
def test_a_variable_frame_rate_file_is_timed_by_its_own_timestamps(tmp_path, recognizer, container):
    """Frames at 0-0.3 s, then 20 s, then 23 s: each record's time_s is the frame's own, not frame / fps.
    The MKV claims 694 frames (its duration x 30) and holds 8, yet it is not damaged: its last frame
    reaches that duration."""
    times = [0, 100, 200, 300, 20000, 20100, 23000, 23100]
    path = tmp_path / f"vfr.{container}"
    variable_rate_clip(path, times)
    stream = recognizer.video(str(path))
    assert [r["time_s"] for r in stream] == [t / 1000 for t in times]
    assert not stream.ended_early()
    proc = run_script("predict.py", "--video", path, "--csv", tmp_path / "rows.csv")
    assert proc.returncode == 0 and "damaged" not in proc.stderr and "8 frames read" in proc.stderr, proc.stderr


def test_a_truncated_file_is_still_reported(tmp_path):
    """A constant-rate clip cut off after a third of its bytes: fewer frames and an earlier last
    timestamp than its container claims, so predict says so (exit 1) and keeps what it read."""
    crossing_clip(tmp_path / "whole.avi", frames=60, blank=range(60))
    raw = (tmp_path / "whole.avi").read_bytes()
    (tmp_path / "cut.avi").write_bytes(raw[:len(raw) // 3])
    proc = run_script("predict.py", "--video", tmp_path / "cut.avi", "--csv", tmp_path / "rows.csv")
    assert proc.returncode == 1 and "(damaged or truncated)" in proc.stderr, proc.stderr
    assert (tmp_path / "rows.csv").is_file()
