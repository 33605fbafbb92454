"""annotate.py's engine: photo archives and hours of video, split into shards and run on Ray actors.

  job = Job(sources, out, model=..., every=1, segment_seconds=60, batch=64)
  shards = job.shards()            photos in batches, each video in segments (deterministic names)
  summary = run(job, workers=2, address=None)

Each worker is a Ray actor (Annotator) that loads the model (LiteRT on the shipped model.tflite, no
TensorFlow) and the detector once, single-threaded, and writes each shard it is given itself:

  OUT/errors/SHARD.parquet   one row per file (or video segment) that could not be read: source, segment, error
  OUT/faces/SHARD.parquet    one row per face (FACE_SCHEMA), written last: its presence marks the shard done
  OUT/job.json               what the dataset is of (model, every, segment length): a rerun must match it
  OUT/summary.json           counts, wall time, rates, workers

Both files go through ferkit.files (a temporary name in the folder, fsync, rename), so a killed run
loses at most the shards in flight, and a rerun of the same command does only the shards not done.
A worker that dies (its process killed, its node gone) loses its shard to the queue, where
another worker takes it; a new worker replaces it when the cluster has a CPU free for one.  So every
input ends up exactly once in faces or errors, whatever fails.
"""
import collections
import dataclasses
import hashlib
import json
import os
import sys
import time

from ferkit import raynode
from ferkit.cli import UserError
from ferkit.dataset import EMOTIONS

FACE_COLUMNS = ["source", "frame", "time_s", "track", "face", "x", "y", "w", "h", "score", "landmarks", "emotion",
                *EMOTIONS]
ERROR_COLUMNS = ["source", "segment", "error"]
TRACKS_PER_SEGMENT = 1_000_000  # segment k's track ids start at k * this + 1: unique over the video
ACTOR_PREFIX = "ferkit-annotator-"  # the workers' Ray names: PREFIX + driver pid + start time + count


def face_schema():
    import pyarrow as pa
    return pa.schema([("source", pa.string()), ("frame", pa.int64()), ("time_s", pa.float64()), ("track", pa.int64()),
                      ("face", pa.int32()), ("x", pa.int32()), ("y", pa.int32()), ("w", pa.int32()), ("h", pa.int32()),
                      ("score", pa.float64()), ("landmarks", pa.list_(pa.float64())), ("emotion", pa.string()),
                      *((e, pa.float64()) for e in EMOTIONS)])


def error_schema():
    import pyarrow as pa
    return pa.schema([("source", pa.string()), ("segment", pa.int64()), ("error", pa.string())])


@dataclasses.dataclass
class Shard:
    """One unit of work: a batch of photos, or frames [start, end) of one video (end None: to its end)."""
    name: str
    kind: str              # "photos" or "video"
    paths: list
    start: int = 0
    end: int = None
    segment: int = None


def _digest(*parts):
    return hashlib.sha1("\0".join(map(str, parts)).encode("utf-8", "surrogateescape")).hexdigest()[:12]


def _identity(path):
    """What a shard read of a file: its path, size and modification time.  An edited, replaced or
    renamed input gives its shard another name, so a rerun redoes it instead of keeping old rows."""
    try:
        info = os.stat(path)
        return (path, info.st_size, info.st_mtime_ns)
    except OSError:
        return (path, None, None)


def probe(path):
    """A video's (frames per second, frame count) from its container, or None if it cannot be opened."""
    import cv2
    import stat
    from ferkit import files, video
    from ferkit.cli import captured_stderr
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO named clip.mp4 would block FFmpeg's open for ever
            return None
    except OSError:
        return None
    with captured_stderr(), files.c_path(path) as name:
        capture = cv2.VideoCapture(name)
        try:
            if not capture.isOpened():
                return None
            return video.rate_and_count(capture)
        finally:
            capture.release()


@dataclasses.dataclass
class Job:
    """What annotate.py was asked: the inputs (photos and videos, already listed), where to write, how."""
    photos: list
    videos: list
    out: str
    model_path: str
    model: str
    detector: str = "yunet"
    min_score: float = 0.5
    every: int = 1
    segment_seconds: float = 60.0
    batch: int = 64

    def describe(self):
        """What job.json records: what a dataset in `out` is of, so that a rerun adds to the same one."""
        return {"model": self.model, "detector": self.detector, "min_score": self.min_score, "every": self.every,
                "segment_seconds": self.segment_seconds, "batch": self.batch}

    def shards(self):
        """Photos in batches of `batch`, in order; each video in segments of segment_seconds (a video whose
        length the container does not say, or that cannot be opened, is one shard)."""
        from ferkit import video
        out = []
        for k in range(0, len(self.photos), self.batch):
            batch = self.photos[k:k + self.batch]
            out.append(Shard(f"photos-{k // self.batch:06d}-{_digest(*map(_identity, batch))}", "photos", batch))
        for path in self.videos:
            probed = probe(path)
            fps, total = probed if probed else (25.0, 0)
            # Segments start on frames the whole video searches whole too, so they find the same faces
            period = video.full_search_period(fps, self.every)
            step = period * max(1, int(round(self.segment_seconds * fps / period)))
            starts = range(0, total, step) if total else [0]
            for segment, start in enumerate(starts):
                end = min(start + step, total) if total else None
                out.append(Shard(f"video-{_digest(*_identity(path), start, end)}-{segment:05d}", "video", [path], start,
                                 end, segment))
        return out


class Annotator:
    """A Ray actor: one model and detector, single-threaded, writing the shards it is given."""

    def __init__(self, job, threads=1):
        import cv2
        cv2.setNumThreads(threads)
        from ferkit.recognizer import Recognizer
        self.job, self.threads = job, threads
        self.recognizer = Recognizer(checkpoint=job.model_path, detector=job.detector, min_score=job.min_score,
                                     num_threads=threads)

    def pid(self):
        return os.getpid()

    def _photo_rows(self, shard, faces, errors):
        from ferkit.photos import PhotoError, read_image
        for path in shard.paths:
            try:
                found = self.recognizer.analyse(read_image(path))[0]
            except PhotoError as e:
                errors.append({"source": path, "segment": None, "error": str(e)})
                continue
            for rank, face in enumerate(found, 1):
                faces.append(_face_row(path, None, None, None, rank, face))
        return len(shard.paths), 0

    def _video_rows(self, shard, faces, errors):
        from ferkit import video
        path = shard.paths[0]
        try:
            capture, fps, total = video.open_capture(path, shard.start)
        except video.VideoError as e:
            errors.append({"source": path, "segment": shard.segment, "error": str(e)})
            return 0, 0
        # No read-ahead thread: a worker holds its CPUs (one by default) and decodes within them
        stream = video.Video(self.recognizer, capture, fps, total, self.job.every, start=shard.start, end=shard.end,
                             read_ahead=self.threads > 1)
        base = (shard.segment or 0) * TRACKS_PER_SEGMENT
        try:
            for record in stream:
                for rank, face in enumerate(record["faces"], 1):
                    faces.append(_face_row(path, record["frame"], record["time_s"], base + face["track"], rank, face))
        finally:
            stream.close()
        read = stream.read - shard.start
        if stream.ended_early(shard.end):
            errors.append({"source": path, "segment": shard.segment,
                           "error": f"the video ended at frame {stream.read} of its {total} (damaged or truncated); "
                                    "the frames before are annotated"})
        return 0, read

    def run(self, shard):
        """Annotate one shard and write its files -> its counts."""
        import pyarrow as pa
        import pyarrow.parquet as pq
        from ferkit import files
        start = time.perf_counter()
        faces, errors = [], []
        photos, frames = (self._photo_rows if shard.kind == "photos" else self._video_rows)(shard, faces, errors)
        for row in faces + errors:  # Parquet strings are UTF-8: a name's undecodable bytes are kept as \xNN escapes
            row["source"] = os.fsencode(row["source"]).decode("utf-8", "backslashreplace")
        stats = {"shard": shard.name, "photos": photos, "frames": frames, "faces": len(faces), "errors": len(errors),
                 "seconds": round(time.perf_counter() - start, 3)}
        for folder, rows, schema, columns in (("errors", errors, error_schema(), ERROR_COLUMNS),
                                              ("faces", faces, face_schema(), FACE_COLUMNS)):  # faces last: the mark
            table = pa.Table.from_pylist(rows, schema=schema) if rows else schema.empty_table()
            table = table.replace_schema_metadata({"ferkit": json.dumps(stats)})
            with files.atomic_path(os.path.join(self.job.out, folder, shard.name + ".parquet")) as tmp:
                pq.write_table(table, tmp)
        return stats


def _face_row(source, frame, time_s, track, rank, face):
    x, y, w, h = face["box"]
    row = {"source": source, "frame": frame, "time_s": time_s, "track": track, "face": rank, "x": x, "y": y,
           "w": w, "h": h, "score": face["score"],
           "landmarks": None if face["landmarks"] is None else [v for point in face["landmarks"] for v in point],
           "emotion": face["emotion"]}
    row.update(face["probabilities"])
    return row


def shard_problem(job, shard):
    """None for a finished shard, "not written", or why its files do not count as finished.  A shard is
    finished when both its Parquet files are in OUT and read back as what it wrote: whole, of our
    schemas, their metadata naming this shard, and as many rows as it counted.  Anything else
    (truncated, emptied, another dataset's, rows deleted) is redone."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    faces = os.path.join(job.out, "faces", shard.name + ".parquet")
    if not os.path.exists(faces):
        return "not written"
    try:
        stats = {}
        for folder, schema, count in (("faces", face_schema(), "faces"), ("errors", error_schema(), "errors")):
            meta = pq.read_metadata(os.path.join(job.out, folder, shard.name + ".parquet"))
            written = json.loads((meta.schema.to_arrow_schema().metadata or {}).get(b"ferkit", b"{}"))
            if not meta.schema.to_arrow_schema().remove_metadata().equals(schema):
                return f"{folder}: another schema"
            if written.get("shard") != shard.name or meta.num_rows != written.get(count):
                return f"{folder}: {meta.num_rows} rows where the shard wrote {written.get(count)}"
            stats = written
        expected = len(shard.paths) if shard.kind == "photos" else None
        if expected is not None and stats.get("photos", 0) + stats.get("errors", 0) < expected:
            return f"covers {stats.get('photos')} of its {expected} photos"
    except (OSError, ValueError, pa.ArrowException) as e:
        return f"unreadable ({str(e).splitlines()[0][:80]})"
    return None


def forget_stale_shards(job, shards):
    """Remove the Parquet files in OUT of shards that are not among `shards` (inputs that changed or
    left since an earlier run), so the dataset holds exactly the current inputs' rows; -> how many."""
    current = {shard.name + ".parquet" for shard in shards}
    removed = 0
    for folder in ("faces", "errors"):
        path = os.path.join(job.out, folder)
        for name in sorted(os.listdir(path)) if os.path.isdir(path) else ():
            if name.endswith(".parquet") and name.startswith(("photos-", "video-")) and name not in current:
                os.remove(os.path.join(path, name))
                removed += folder == "faces"
    return removed


def left_to_do(job, shards):
    """The shards to run: those never written, and those whose files do not read back as finished
    (each said in a note); the files of shards no longer among `shards` are removed first."""
    stale = forget_stale_shards(job, shards)
    if stale:
        print(f"note: {stale} shards of inputs that changed or are no longer given were removed", file=sys.stderr)
    problems = {s.name: shard_problem(job, s) for s in shards}
    redone = [name for name, problem in problems.items() if problem not in (None, "not written")]
    for name in redone[:5]:
        print(f"note: shard {name} is redone: {problems[name]}", file=sys.stderr)
    if len(redone) > 5:
        print(f"note: ... and {len(redone) - 5} more shards are redone", file=sys.stderr)
    return [s for s in shards if problems[s.name] is not None]


def run(job, workers, address=None, verbose=False, progress=True, threads=1):
    """Every shard not yet done, on `workers` actors -> the summary (also written to OUT/summary.json).
    Starts Ray embedded on this machine (address None) or joins the cluster at address, unless this
    process is already connected to one; disconnects at the end only if it connected."""
    import logging
    import ray
    started = time.perf_counter()
    shards = job.shards()
    todo = collections.deque(left_to_do(job, shards))
    ran, used = len(todo), 0
    connected = bool(todo) and not ray.is_initialized()  # nothing left to do: no Ray at all
    if connected:
        if not verbose:  # Ray's notes on start-up (token authentication is on, as it should be): not ours to print
            logging.getLogger("ray").setLevel(logging.ERROR)
        raynode.start_ray(address, workers, verbose)
    actors = []
    workers = _workers_that_fit(workers, threads) if todo else workers
    try:
        remote = ray.remote(num_cpus=threads, max_restarts=0)(Annotator)
        made = iter(range(1 << 30))
        prefix = f"{ACTOR_PREFIX}{os.getpid()}-{time.time_ns()}-"

        def new_actor():
            actors.append(remote.options(name=prefix + str(next(made))).remote(job, threads))
            return actors[-1]

        totals, deaths = _drive(todo, new_actor, actors, workers, threads, progress)
        used = len(actors)
    finally:
        for actor in actors:
            ray.kill(actor)
        if connected:
            ray.shutdown()
    seconds = time.perf_counter() - started
    items = totals["photos"] + totals["frames"]
    this_run = {"shards": ran, "skipped": len(shards) - ran, **{k: totals[k] for k in STATS},
                "wall_seconds": round(seconds, 2), "per_second": round(items / seconds, 1) if ran else None,
                "workers": workers, "workers_lost": deaths, "workers_at_end": used}
    return write_summary(job, shards, this_run)


def _drive(todo, new_actor, actors, workers, threads, progress):
    """Run the shards of `todo` (a deque) on actors until none is left -> (totals Counter of STATS, workers
    lost).  new_actor() starts one (and adds it to `actors`); a shard whose worker died goes back to the
    front of the queue for another, and a lost worker is replaced once the cluster has room for it."""
    import ray
    from ray.exceptions import RayActorError
    from tqdm import tqdm
    deaths, totals = 0, collections.Counter()
    idle = [new_actor() for _ in range(min(workers, len(todo)))]
    pending = {}
    bar = tqdm(total=len(todo), unit="shard", disable=not progress, desc="shards")
    while todo or pending:
        while idle and todo:
            actor, shard = idle.pop(), todo.popleft()
            pending[actor.run.remote(shard)] = (actor, shard)
        ready, _ = ray.wait(list(pending), num_returns=1)
        actor, shard = pending.pop(ready[0])
        try:
            stats = ray.get(ready[0])
        except RayActorError as e:  # its process or node died: the shard goes back for another worker
            deaths += 1
            if deaths > 3 * workers + 3:
                raise UserError(f"workers keep dying ({deaths} so far; the last: {str(e).splitlines()[0]}); "
                                "run again with --verbose to see Ray's logs") from None
            todo.appendleft(shard)
            actors.remove(actor)
            busy = len(pending)
            if busy == 0 or ray.available_resources().get("CPU", 0) >= threads:
                idle.append(new_actor())  # a CPU for it (or no worker left at all: wait for one)
            continue
        totals.update({k: stats[k] for k in STATS})
        bar.update()
        bar.set_postfix(faces=totals["faces"], errors=totals["errors"])
        idle.append(actor)
        if len(actors) < workers and todo and ray.available_resources().get("CPU", 0) >= threads:
            idle.append(new_actor())  # a lost worker's place, once the cluster has room again
    bar.close()
    return totals, deaths


def _workers_that_fit(workers, threads):
    """`workers`, or as many as the cluster has CPUs for (with a note): more would wait for ever for one."""
    import ray
    room = int(ray.cluster_resources().get("CPU", 0) // threads)
    if workers > room:
        print(f"note: the cluster has CPUs for {room} workers; running {max(1, room)}, not {workers}", file=sys.stderr)
    return max(1, min(workers, room))


def write_summary(job, shards, this_run):
    """OUT/summary.json: the dataset's counts over all its shards, and this run's -> that dict."""
    from ferkit import files
    summary = summarise(job, shards)
    summary["this_run"] = this_run
    with files.atomic_write(os.path.join(job.out, "summary.json")) as f:
        json.dump(summary, f, indent=1)
    return summary


STATS = ("photos", "frames", "faces", "errors")


def summarise(job, shards):
    """The dataset's counts, over every shard's files (this run's and earlier runs'); each faces file
    carries its shard's counts in its metadata."""
    import pyarrow.parquet as pq
    totals = collections.Counter()
    for shard in shards:
        meta = pq.read_schema(os.path.join(job.out, "faces", shard.name + ".parquet")).metadata
        stats = json.loads(meta[b"ferkit"])
        totals.update({k: stats[k] for k in STATS})
        totals["busy_seconds"] += stats["seconds"]
    items = totals["photos"] + totals["frames"]
    return {"shards": len(shards), **{k: totals[k] for k in STATS},
            "per_worker_second": round(items / totals["busy_seconds"], 1) if totals["busy_seconds"] else None}
