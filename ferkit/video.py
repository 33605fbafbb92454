"""Video, per person: faces tracked across frames, emotions smoothed over time, a per-person summary,
a timeline plot and an annotated video that plays in a browser.

  for record in Recognizer().video("clip.mp4", every=1, smooth=SMOOTH):
      record["frame"], record["time_s"], record["faces"]   # each face: Recognizer.recognize's dict plus
                                                           # "track" (an id, unique over the video),
                                                           # "smoothed" (7 probabilities), "smoothed_emotion"
  rows(records)            -> one dict per face per classified frame (what predict.py --csv writes)
  dataframe(records)       -> the same rows as a pandas DataFrame (pandas installed)
  summary(records, video)  -> per track: time on screen, dominant emotion, share of time in each emotion
  plot_timeline(records, path)      one panel per track (the longest few): smoothed probabilities over time
  AnnotatedVideo(path, fps, size)   H.264 in MP4 through PyAV, every source frame

Tracking is a small matcher written here (Tracker), not a library: the faces of a video are few
and YuNet's boxes are good, so a constant-velocity prediction per track and a greedy match on
centre distance and size suffice, and this keeps the photo path free of SciPy (which norfair and
supervision's ByteTrack pull in) and of a Kalman filter's tuning.  docs/video.md says more.
"""
import math

import numpy as np

from ferkit.dataset import EMOTIONS
from ferkit.errors import FerkitError

SMOOTH = 0.3  # seconds: the time constant of the emotion average; one blink does not flip a label
MAX_GAP = 1.0  # seconds a track survives unseen (a missed detection, a face turned away, a crossing)


class Tracker:
    """Gives each face a track id that stays with the person from frame to frame.

    Each track remembers its last box, its face size (a running average of box widths) and its
    velocity (px/s, a running average, updated only from boxes of about its usual size: a face
    half hidden behind another has a shrunken box whose centre jumps).  In a new frame each
    track's centre is predicted forward, and faces and tracks are paired greedily, cheapest first,
    by cost = centre distance / face size + |log(width / face size)|, a pair only if its cost is
    under `gate`, which widens the longer the track has gone unseen (it may have moved further
    than predicted).  A face left over starts a new track; a track unseen for max_gap seconds ends.
    Ids count up from 1 and are never reused.
    """

    def __init__(self, max_gap=MAX_GAP, gate=1.5):
        self.max_gap, self.gate = max_gap, gate
        self.tracks = {}  # id -> {"box": (x, y, w, h), "time": s, "size": px, "velocity": (vx, vy)}
        self.next_id = 1

    def _cost(self, track, box, time_s):
        x, y, w, h = track["box"]
        dt = time_s - track["time"]
        cx, cy = x + w / 2 + track["velocity"][0] * dt, y + h / 2 + track["velocity"][1] * dt
        bx, by, bw, bh = box
        size = max(track["size"], 1)
        return math.hypot(bx + bw / 2 - cx, by + bh / 2 - cy) / size + abs(math.log(max(bw, 1) / size))

    def update(self, boxes, time_s):
        """Boxes [(x, y, w, h)] seen at time_s -> their track ids, in the same order."""
        self.tracks = {k: t for k, t in self.tracks.items() if time_s - t["time"] <= self.max_gap}
        pairs = []
        for k, track in self.tracks.items():
            gate = self.gate * (1 + (time_s - track["time"]) / self.max_gap)
            for i, box in enumerate(boxes):
                cost = self._cost(track, box, time_s)
                if cost < gate:
                    pairs.append((cost, k, i))
        ids, used = [None] * len(boxes), set()
        for cost, k, i in sorted(pairs):
            if ids[i] is None and k not in used:
                ids[i] = k
                used.add(k)
        for i, box in enumerate(boxes):
            if ids[i] is None:
                ids[i], self.next_id = self.next_id, self.next_id + 1
                self.tracks[ids[i]] = {"box": box, "time": time_s, "size": float(box[2]), "velocity": (0.0, 0.0)}
                continue
            track = self.tracks[ids[i]]
            (ox, oy, ow, oh), (x, y, w, h) = track["box"], box
            dt = time_s - track["time"]
            if dt > 0 and abs(math.log(max(w, 1) / max(track["size"], 1))) < 0.15:
                seen = ((x + w / 2 - ox - ow / 2) / dt, (y + h / 2 - oy - oh / 2) / dt)
                track["velocity"] = tuple(0.5 * a + 0.5 * b for a, b in zip(track["velocity"], seen))
            track["size"] = 0.7 * track["size"] + 0.3 * w
            track["box"], track["time"] = box, time_s
        return ids


class Smoother:
    """A time-weighted average of each track's probabilities: the new frame's weight is
    1 - exp(-dt / smooth), so the average forgets at the same rate whatever the frame rate
    or --every.  smooth=0 passes the probabilities through."""

    def __init__(self, smooth=SMOOTH):
        self.smooth = smooth
        self.state = {}  # track -> (time_s, probabilities)

    def update(self, track, probabilities, time_s):
        """probabilities float (7,) -> the smoothed (7,)."""
        p = np.asarray(probabilities, np.float64)
        if self.smooth > 0 and track in self.state:
            then, average = self.state[track]
            keep = math.exp(-(time_s - then) / self.smooth)
            p = keep * average + (1 - keep) * p
        self.state[track] = (time_s, p)
        return p


class VideoError(FerkitError):
    """A file that cannot be read as a video; the message says why in a few words."""


VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp")


MIN_FPS, MAX_FPS = 0.01, 1000.0   # outside: a damaged or hostile header (a rate near 0 divided by zero downstream)
MAX_HOURS = 48                    # a frame count beyond this many hours at the rate is not believed


def rate_and_count(capture):
    """(frames per second, frame count or 0 for unknown) that an opened cv2.VideoCapture's container
    claims, within bounds: a rate outside [MIN_FPS, MAX_FPS] is taken as 25, and a count beyond
    MAX_HOURS of video as unknown (a header claiming 2^31 frames made 3.5 million shards of work)."""
    import cv2
    fps = capture.get(cv2.CAP_PROP_FPS)
    fps = fps if fps and math.isfinite(fps) and MIN_FPS <= fps <= MAX_FPS else 25.0
    total = capture.get(cv2.CAP_PROP_FRAME_COUNT)
    total = int(total) if math.isfinite(total) and 0 < total <= fps * MAX_HOURS * 3600 else 0
    return fps, total


def open_capture(path, start=0):
    """A video file -> (an opened cv2.VideoCapture at frame `start`, frames per second, the frame
    count its container claims or 0); VideoError if it is missing or not a video OpenCV can decode."""
    import os
    import cv2
    from ferkit import files
    from ferkit.cli import captured_stderr
    if os.path.exists(path) and not os.path.isfile(path) and not os.path.isdir(path):  # never opened: a FIFO would block
        raise VideoError("not a regular file (a device, pipe or socket); give a video file")
    if not os.path.isfile(path):
        raise VideoError("no such video file")
    from ferkit.photos import image_kind
    with open(path, "rb") as f:
        kind = image_kind(f.read(16))
    if kind:  # FFmpeg reads a photo as a one-frame "video"
        raise VideoError(f"cannot read it as a video: it is a {kind} image; pass photos without --video")
    with captured_stderr(), files.c_path(path) as name:  # FFmpeg's complaints: ours says it in one line
        capture = cv2.VideoCapture(name)  # FFmpeg opens the file here; the alias is not needed after
        ok, first = capture.read() if capture.isOpened() else (False, None)
    if not ok:
        capture.release()
        raise VideoError("cannot read it as a video (not a video file, or a format this OpenCV cannot decode)")
    fps, total = rate_and_count(capture)
    if start:  # a segment of the video (annotate.py): FFmpeg seeks to the keyframe before, then decodes on
        capture.set(cv2.CAP_PROP_POS_FRAMES, start)
        return capture, fps, total
    return _FirstFrameKept(capture, first), fps, total


def timed_read(capture):
    """capture.read() -> (ok, frame, the frame's presentation time in seconds from the decoder, or None
    where it gives none).  Read right after the frame is decoded: a variable-frame-rate file's frames
    are not number / fps apart, and a read-ahead thread is frames ahead of the caller."""
    import cv2
    ok, frame = capture.read()
    if not ok:
        return False, None, None
    ms = capture.get(cv2.CAP_PROP_POS_MSEC)
    return True, frame, ms / 1000.0 if math.isfinite(ms) and ms >= 0 else None


class _FirstFrameKept:
    """A capture whose first frame was read to check the file: read() gives that frame first (seeking
    back to it instead is inexact for some codecs, and fails on a one-frame file), and get() its
    properties (its timestamp) until the next read."""

    def __init__(self, capture, first):
        import cv2
        self.capture, self.first, self.giving_first = capture, first, False
        self.first_ms = capture.get(cv2.CAP_PROP_POS_MSEC)

    def read(self):
        self.giving_first = self.first is not None
        if self.first is not None:
            frame, self.first = self.first, None
            return True, frame
        return self.capture.read()

    def get(self, prop):
        import cv2
        return self.first_ms if self.giving_first and prop == cv2.CAP_PROP_POS_MSEC else self.capture.get(prop)

    def release(self):
        self.capture.release()


FULL_SEARCH = 0.5  # seconds between searches of the whole frame; between them, only around the faces
BATCH_FRAMES, BATCH_FACES = 8, 32  # frames read ahead, and faces classified together in one model run


def full_search_period(fps, every=1):
    """Frames between full searches: frame k is searched whole when k % period == 0 (a multiple of
    every, about FULL_SEARCH seconds), so any segment that starts at such a frame (annotate.py)
    finds the same faces as the whole video does."""
    return every * max(1, int(round(FULL_SEARCH * fps / every)))


class _ReadAhead:
    """capture.read() on a thread, up to `depth` frames ahead of the caller and at most `limit` frames
    in all (None: to the end).  FFmpeg releases the GIL while it decodes, so decoding overlaps the
    detector and the model, which use the cores unevenly.  stop() ends the thread; the capture stays
    open for its owner to release."""

    _END = object()

    def __init__(self, capture, limit=None, depth=8):
        import queue
        import threading
        self.capture, self.queue, self.stopping = capture, queue.Queue(depth), threading.Event()
        self.thread = threading.Thread(target=self._run, args=(limit,), daemon=True, name="ferkit-video-reader")
        self.thread.start()

    def _put(self, item):
        import queue
        while not self.stopping.is_set():
            try:
                self.queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, limit):  # queues (frame, seconds): timed_read's, as read() gives them
        n = 0
        try:
            while limit is None or n < limit:
                ok, frame, seconds = timed_read(self.capture)
                if not ok or not self._put((frame, seconds)):
                    break
                n += 1
        except Exception as e:  # given to the caller, in order, in place of the next frame
            self._put(e)
        self._put(self._END)

    def read(self):
        item = self.queue.get()
        if item is self._END:
            self.queue.put(item)  # read() after the end stays at the end
            return False, None, None
        if isinstance(item, Exception):
            raise item
        return (True, *item)

    def stop(self):
        self.stopping.set()
        self.thread.join()


class Video:
    """Recognizer.video's answer: iterate for the records.  .fps, .total (the frames the container
    claims, 0 if it does not say) and .read (frames decoded so far) describe the stream.

    Faces are searched for in the whole frame every full_search_period frames, after a frame
    without faces, and when a face is lost; in the frames between, only around the faces of the
    last classified frame (YuNetDetector.detect_near: a third of the cost).  A face that comes
    into view is therefore found within FULL_SEARCH seconds.  A file is decoded by a thread a few
    frames ahead (_ReadAhead; read_ahead=False decodes in the caller's thread, for a worker that
    holds one CPU) and its frames classified BATCH_FRAMES at a time, in one model run; live=True
    (a camera) reads and answers frame by frame instead.
    """

    def __init__(self, recognizer, capture, fps, total=0, every=1, smooth=SMOOTH, largest=False, images=False,
                 start=0, end=None, live=False, read_ahead=True):
        self.recognizer, self.capture, self.fps, self.total = recognizer, capture, fps, total
        self.every, self.largest, self.images, self.live = every, largest, images, live
        self.read_ahead = read_ahead and not live
        # A track outlives a few classification intervals: with --every 11 at 10 frames/s, faces are
        # seen 1.1 s apart, longer than MAX_GAP, and each would otherwise start a new track.
        self.tracker, self.smoother = Tracker(max_gap=max(MAX_GAP, 2.5 * every / fps)), Smoother(smooth)
        self.read, self.end = start, end  # frame numbers: the capture is at `start`; stop before `end`
        self.period = full_search_period(fps, every)
        self._faces = []  # the last classified frame's faces, held for the frames after it
        self.last_time = None  # the last decoded frame's time (seconds)

    def __iter__(self):
        """One record per classified frame; with images=True one per source frame, each with its
        "image" (BGR) and "classified" (False: the faces are the last classified frame's, held)."""
        batch = 1 if self.live else BATCH_FRAMES
        reader = (_ReadAhead(self.capture, None if self.end is None else self.end - self.read) if self.read_ahead
                  else self.capture)
        try:
            yield from self._frames(reader, batch)
        finally:  # also when the caller stops early (the generator is closed)
            if reader is not self.capture:
                reader.stop()

    def _frames(self, reader, batch):
        pending, previous = [], None  # frames read but not classified yet; the last classified frame's detections
        while True:
            ok, frame, seconds = (self._next(reader) if self.end is None or self.read < self.end
                                  else (False, None, None))
            if ok:
                number, self.read = self.read, self.read + 1
                entry = {"frame": number, "time": self._clock(number, seconds), "shape": frame.shape,
                         "image": frame if self.images else None, "classified": number % self.every == 0}
                if entry["classified"]:
                    entry["detections"], entry["inputs"] = self._locate(frame, number, previous)
                    previous = entry["detections"]
                pending.append(entry)
            classified = [e for e in pending if e["classified"]]
            faces = sum(len(e["inputs"]) for e in classified)
            if pending and (not ok or len(classified) >= batch or faces >= BATCH_FACES
                            or len(pending) >= 4 * batch):  # with --every, frames held in memory
                yield from self._classify(pending)
                pending = []
            if not ok:
                return

    def _next(self, reader):
        """(ok, frame, seconds or None) from the read-ahead thread, or from the capture itself."""
        if isinstance(reader, _ReadAhead):
            return reader.read()
        if self.live:  # a camera's timestamps are its clock's, not the stream's: frames count the time
            return (*reader.read(), None)
        return timed_read(reader)

    def _clock(self, number, seconds):
        """A frame's time in seconds: the decoder's timestamp where it has one that moves forward (a
        variable-frame-rate file's frames are not number / fps apart), else one frame interval on."""
        if seconds is None or (self.last_time is not None and seconds <= self.last_time):
            seconds = number / self.fps if self.last_time is None else self.last_time + 1.0 / self.fps
        self.last_time = seconds
        return seconds

    def ended_early(self, end=None):
        """Whether the file ended before frame `end` (default: the count its container claims) and
        before the time that count stands for: a variable-frame-rate file's claim is its duration x
        a nominal rate, more frames than it holds, but its last timestamps reach that duration."""
        end = self.total if end is None else end
        if not end or self.read >= end:
            return False
        return self.last_time is None or self.last_time + 2.0 / self.fps < end / self.fps

    def _locate(self, frame, number, previous):
        """A frame's detections and model inputs (Recognizer.locate), searched whole or near `previous`."""
        detector = self.recognizer.detector
        if not hasattr(detector, "detect_near"):  # no detector (whole frames), or Haar: every frame whole
            return self.recognizer.locate(frame, self.largest)
        found = None
        if previous and number % self.period:
            found = detector.detect_near(frame, [d.box for d in previous])
            if len(found) < len(previous):  # a face lost or moved out of its square: search it all
                found = None
        return self.recognizer.locate(frame, self.largest, found)

    def _classify(self, pending):
        """Classify the pending frames' faces in one model run, then track, smooth and give their records."""
        classified = [e for e in pending if e["classified"]]
        inputs = np.concatenate([e["inputs"] for e in classified]) if classified else None
        probabilities = self.recognizer.classifier.predict(inputs) if classified else None
        at = 0
        for entry in pending:
            number, time_s = entry["frame"], entry["time"]
            if entry["classified"]:
                n = len(entry["inputs"])
                faces = self.recognizer.describe(entry["detections"], probabilities[at:at + n], entry["shape"])
                at += n
                for face, track in zip(faces, self.tracker.update([tuple(f["box"]) for f in faces], time_s)):
                    smoothed = self.smoother.update(track, [face["probabilities"][e] for e in EMOTIONS], time_s)
                    face["track"] = track
                    face["smoothed"] = {e: round(float(v), 4) for e, v in zip(EMOTIONS, smoothed)}
                    face["smoothed_emotion"] = EMOTIONS[int(np.argmax(smoothed))]
                self._faces = faces
            if entry["classified"] or self.images:
                record = {"frame": number, "time_s": round(time_s, 3), "classified": entry["classified"],
                          "faces": self._faces}
                if self.images:
                    record["image"] = entry["image"]
                yield record

    def close(self):
        self.capture.release()


def rows(records):
    """Records -> one dict per face per classified frame: frame, time_s, track, face (size rank in the
    frame, 1 = largest), box, score, emotion and the 7 probabilities, then the smoothed ones."""
    out = []
    for record in records:
        if not record.get("classified", True):
            continue
        for rank, face in enumerate(record["faces"], 1):
            x, y, w, h = face["box"]
            row = {"frame": record["frame"], "time_s": record["time_s"], "track": face["track"], "face": rank,
                   "x": x, "y": y, "w": w, "h": h, "score": face["score"], "emotion": face["emotion"]}
            row.update(face["probabilities"])
            row["smoothed_emotion"] = face["smoothed_emotion"]
            row.update({f"smoothed_{e}": v for e, v in face["smoothed"].items()})
            out.append(row)
    return out


COLUMNS = ["frame", "time_s", "track", "face", "x", "y", "w", "h", "score", "emotion", *EMOTIONS,
           "smoothed_emotion", *(f"smoothed_{e}" for e in EMOTIONS)]


def csv_cells(row):
    """A row of rows() as predict.py's CSV writes it: probabilities to 4 decimals, times to 3, no score as ''."""
    return ["" if v is None else f"{v:.3f}" if k == "time_s" else f"{v:.4f}" if isinstance(v, float) else str(v)
            for k, v in row.items()]


def dataframe(records):
    """rows(records) as a pandas DataFrame (pandas must be installed)."""
    import pandas
    return pandas.DataFrame(rows(records), columns=COLUMNS)


def summary(records, interval):
    """Per track, longest first: {"track", "first_s", "last_s", "seconds" on screen (classified
    frames seen x interval, the seconds between classified frames), "dominant" emotion, "shares"
    of that time in each (smoothed) emotion, adding up to 1}."""
    seen = {}
    for record in records:
        if not record.get("classified", True):
            continue
        for face in record["faces"]:
            seen.setdefault(face["track"], []).append((record["time_s"], face["smoothed_emotion"]))
    tracks = []
    for track, sightings in seen.items():
        counts = {e: 0 for e in EMOTIONS}
        for _, emotion in sightings:
            counts[emotion] += 1
        shares = {e: round(n / len(sightings), 4) for e, n in counts.items()}
        tracks.append({"track": track, "first_s": sightings[0][0], "last_s": sightings[-1][0],
                       "seconds": round(len(sightings) * interval, 3), "frames": len(sightings),
                       "dominant": max(EMOTIONS, key=counts.get), "shares": shares})
    return sorted(tracks, key=lambda t: (-t["frames"], t["track"]))


def summary_table(tracks):
    """The summary as the lines predict.py prints."""
    lines = [f"{'track':>5} {'on screen':>10} {'dominant':>9}  " + " ".join(f"{e[:7]:>7}" for e in EMOTIONS)]
    for t in tracks:
        lines.append(f"{t['track']:>5} {t['seconds']:>9.1f}s {t['dominant']:>9}  "
                     + " ".join(f"{100 * t['shares'][e]:>6.0f}%" for e in EMOTIONS))
    return lines if tracks else ["no face was found in the video"]


# One colour per emotion, the same in every panel (and as the page's, ferkit/web/app.js).
COLOURS = {"angry": "#d92d20", "disgust": "#7a9a01", "fear": "#7f56d9", "happy": "#f79009", "sad": "#2e90fa",
           "surprise": "#ee46bc", "neutral": "#667085"}


def _bgr(colour):
    return tuple(int(colour[i:i + 2], 16) for i in (5, 3, 1))


def plot_timeline(records, path, tracks=4):
    """One panel per track (the `tracks` longest): its smoothed probabilities over time, stacked, one
    colour per emotion, a time axis in seconds.  Drawn with OpenCV: no plotting library to import
    (a second of start-up, and not installed with the photo path)."""
    import cv2
    from ferkit import files
    series = {}
    for record in records:
        if record.get("classified", True):
            for face in record["faces"]:
                series.setdefault(face["track"], []).append((record["time_s"], [face["smoothed"][e] for e in EMOTIONS]))
    longest = sorted(series, key=lambda k: (-len(series[k]), k))[:tracks]
    end = max((record["time_s"] for record in records), default=0.0) or 1.0
    left, right, top, panel, gap, bottom = 80, 120, 40, 130, 16, 50
    width, height = 1000, top + max(1, len(longest)) * (panel + gap) + bottom
    image = np.full((height, width, 3), 255, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(image, "emotions over time, per person (smoothed probabilities)", (left, 25), font, 0.55, (40, 40, 40), 1,
                cv2.LINE_AA)
    x_of = lambda t: int(round(left + (width - left - right) * t / end))  # noqa: E731
    for n, track in enumerate(longest):
        y0 = top + n * (panel + gap)
        times = np.array([t for t, _ in series[track]])
        stacked = np.cumsum(np.array([p for _, p in series[track]]), axis=1)  # (T, 7): each emotion's top edge
        stacked /= stacked[:, -1:]  # rounded probabilities add up to 1 +- 1e-4
        xs = np.array([x_of(t) for t in times])
        if len(xs) == 1:  # one sighting: a sliver wide enough to see
            xs, stacked = np.array([xs[0], xs[0] + 3]), np.repeat(stacked, 2, axis=0)
        below = np.zeros(len(xs))
        for k, emotion in enumerate(EMOTIONS):
            upper = stacked[:, k]
            points = np.concatenate([np.stack([xs, y0 + panel * (1 - upper)], 1),
                                     np.stack([xs[::-1], y0 + panel * (1 - below[::-1])], 1)]).astype(np.int32)
            cv2.fillPoly(image, [points], _bgr(COLOURS[emotion]))
            below = upper
        cv2.rectangle(image, (left, y0), (width - right, y0 + panel), (120, 120, 120), 1)
        cv2.putText(image, f"track {track}", (8, y0 + panel // 2 + 5), font, 0.5, (40, 40, 40), 1, cv2.LINE_AA)
    if not longest:
        cv2.putText(image, "no face was found", (left + 200, top + 70), font, 0.6, (40, 40, 40), 1, cv2.LINE_AA)
    axis = top + max(1, len(longest)) * (panel + gap) - gap
    step = next(s for s in (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600, 1e9) if end / s <= 10)
    for k in range(int(end / step) + 1):
        x = x_of(k * step)
        cv2.line(image, (x, axis), (x, axis + 5), (80, 80, 80), 1)
        cv2.putText(image, f"{k * step:g}", (x - 8, axis + 20), font, 0.45, (60, 60, 60), 1, cv2.LINE_AA)
    cv2.putText(image, "time (s)", ((left + width - right) // 2 - 30, axis + 42), font, 0.5, (40, 40, 40), 1, cv2.LINE_AA)
    for k, emotion in enumerate(EMOTIONS):  # the legend
        y = top + 10 + 20 * k
        cv2.rectangle(image, (width - right + 12, y - 10), (width - right + 26, y + 2), _bgr(COLOURS[emotion]), cv2.FILLED)
        cv2.putText(image, emotion, (width - right + 32, y), font, 0.45, (40, 40, 40), 1, cv2.LINE_AA)
    ok, png = cv2.imencode(".png", image)
    with files.atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(png.tobytes())


class AnnotatedVideo:
    """Frames (BGR, all one size) -> an H.264 MP4 (yuv420p, moov atom first) at the source frame
    rate, which browsers play.  PyAV's wheel carries FFmpeg and libx264 (GPL-2.0-or-later)."""

    def __init__(self, path, fps, size):
        import fractions
        import av
        self.container = av.open(path, mode="w", format="mp4", options={"movflags": "+faststart"})
        rate = fractions.Fraction(fps).limit_denominator(1001)
        self.stream = self.container.add_stream("libx264", rate=rate, options={"preset": "veryfast", "crf": "23"})
        width, height = size
        self.stream.width, self.stream.height = width + width % 2, height + height % 2  # 4:2:0 needs even sides
        self.stream.pix_fmt = "yuv420p"
        self.tick, self.count = 1 / rate, 0  # frame k is shown at k ticks

    def write(self, bgr):
        import av
        h, w = bgr.shape[:2]
        if (w, h) != (self.stream.width, self.stream.height):
            bgr = np.pad(bgr, ((0, self.stream.height - h), (0, self.stream.width - w), (0, 0)), mode="edge")
        frame = av.VideoFrame.from_ndarray(bgr, format="bgr24")
        frame.pts, frame.time_base = self.count, self.tick
        self.count += 1
        for packet in self.stream.encode(frame):
            self.container.mux(packet)

    def close(self):
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()
