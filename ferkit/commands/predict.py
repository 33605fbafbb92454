"""Emotions of the faces in photos and videos, with a trained model.

    ferkit predict PATH [PATH ...] [--model acnn_alstm_ferplus | --checkpoint PATH] [--detector yunet|haar]
                   [--json] [--annotate OUT_DIR] [--no-detect] [--largest] [--explain OUT_DIR]
    ferkit predict --video FILE [--csv OUT.csv] [--every N] [--smooth SECONDS] [--timeline OUT.png]
                   [--annotate OUT_DIR]
    ferkit predict --camera N [--annotate OUT_DIR]
    (python predict.py takes the same options)

PATH is an image file or a folder (walked recursively, hidden files skipped).
Faces are found with YuNet (or the Haar cascade), aligned onto where FER-2013
has its faces, and classified; every face is reported, largest first.
--no-detect treats each whole image as one face (for pre-cropped faces such
as FER-2013's own).  A bad file is reported in its entry and on stderr, the
others are still processed, and the exit status is 1 if any image failed.
Output images mirror the input tree under OUT_DIR, as PNG.

In a video each person is tracked: every face row carries a track id, kept
from frame to frame, and an emotion averaged over the last --smooth seconds;
the per-person summary is printed at the end (and written beside --csv as
OUT.summary.json, with the timeline plot OUT.timeline.png); --annotate writes
every frame, labelled, as an H.264 MP4 that browsers play.
"""
import contextlib
import csv
import errno
import importlib.util
import json
import os
import sys

import cv2
import numpy as np

from ferkit import cli, files, video
from ferkit.backends import DEFAULT_MODEL
from ferkit.detectors import DETECTORS, MIN_SCORE
from ferkit import photos
from ferkit.photos import IMAGE_EXTENSIONS, PhotoError, captured_stderr, list_images, read_image


def label_of(face):
    """'happy 93%' for a photo; '#2 happy 93%' for a tracked face in a video, with its smoothed emotion."""
    if "track" in face:
        emotion = face["smoothed_emotion"]
        return f"#{face['track']} {emotion} {face['smoothed'][emotion]:.0%}"
    return f"{face['emotion']} {face['probabilities'][face['emotion']]:.0%}"


def _overlaps(a, b):
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def draw(image, faces):
    """Boxes, landmarks and 'emotion 93%' labels on a BGR image, in place.

    Each label goes above its box, else below it, else further up or down: the
    first place inside the image that covers no other label and no other face.
    """
    height, width = image.shape[:2]
    thickness = max(2, round(max(height, width) / 300))
    scale, weight = thickness / 3, thickness // 2 + 1
    boxes = [(x, y, x + w, y + h) for x, y, w, h in (f["box"] for f in faces)]
    placed = []
    for i, face in enumerate(faces):
        x0, y0, x1, y1 = boxes[i]
        label = label_of(face)
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, weight)
        lw, lh = tw + 6, th + base + 4
        left = min(max(x0, 0), max(width - lw, 0))
        tops = [y0 - lh, y1, y0] + [y0 - lh * k for k in range(2, 6)] + [y1 + lh * k for k in range(1, 5)]
        others = placed + [b for j, b in enumerate(boxes) if j != i]
        rects = [(left, t, left + lw, t + lh) for t in tops if 0 <= t and t + lh <= height]
        free = [r for r in rects if not any(_overlaps(r, o) for o in others)]
        rect = (free or [r for r in rects if not any(_overlaps(r, o) for o in placed)] or rects or
                [(left, 0, left + lw, lh)])[0]
        placed.append(rect)
        cv2.rectangle(image, (x0, y0), (x1, y1), (0, 200, 0), thickness)
        for px, py in face.get("landmarks") or ():
            cv2.circle(image, (int(round(px)), int(round(py))), thickness, (0, 220, 255), cv2.FILLED)
        cv2.rectangle(image, rect[:2], rect[2:], (0, 200, 0), cv2.FILLED)
        cv2.putText(image, label, (rect[0] + 3, rect[1] + th + 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), weight)
    return image


def attention_map(face, weights, size=192):
    """Face uint8 (48, 48, 1) and local attention (36,) -> BGR (size, 2*size): the face, and the heat map over it."""
    grid = int(round(len(weights) ** 0.5))
    heat = cv2.resize(weights.reshape(grid, grid) / weights.max(), (size, size), interpolation=cv2.INTER_CUBIC)
    heat = cv2.applyColorMap(np.clip(heat * 255, 0, 255).astype(np.uint8), cv2.COLORMAP_JET)
    gray = cv2.cvtColor(cv2.resize(face[:, :, 0], (size, size), interpolation=cv2.INTER_CUBIC), cv2.COLOR_GRAY2BGR)
    return np.hstack([gray, cv2.addWeighted(gray, 0.5, heat, 0.5, 0)])


def output_stems(items):
    """[(path, name)] -> a distinct output stem for each: the name without extension, unless two
    inputs share it (photo.jpg and photo.png in one folder): then the whole name; a whole name
    that still meets another's stem (photo.jpg beside photo.jpg.png) gets ~2, ~3, ..."""
    stems = [os.path.splitext(name)[0] for _, name in items]
    wanted = [s if stems.count(s) == 1 else name for s, (_, name) in zip(stems, items)]
    seen, unique = {}, []
    for stem in wanted:
        seen[stem] = seen.get(stem, 0) + 1
        unique.append(stem if seen[stem] == 1 else f"{stem}~{seen[stem]}")
    return unique


def write_image(path, image):
    """A PNG, atomically, into a folder that may not exist yet; a failure is a UserError.  Encoded
    in memory and written by Python, so any name the file system allows works."""
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        ok, encoded = cv2.imencode(".png", image)
        if not ok:
            raise cli.UserError(f"{path}: OpenCV could not encode the image as PNG")
        with files.atomic_write(path, "wb") as f:
            f.write(encoded.tobytes())
    except OSError as e:
        if e.errno == errno.ENAMETOOLONG:  # this input's own problem: its entry says so, and the run goes on
            raise PhotoError(f"its output name is too long for the file system ({os.path.basename(path)[:40]}...)") from None
        raise cli.UserError(f"{path}: could not write the image ({e.strerror}); is the folder writable?") from None


def predict_photos(recognizer, args):
    items = list_images(args.paths)
    if not items:
        raise cli.UserError(f"no image files in {', '.join(args.paths)} ({', '.join(e[1:] for e in IMAGE_EXTENSIONS)})")
    entries, failed = [], 0
    for (path, _), stem in zip(items, output_stems(items)):
        entry = {"path": path, "faces": [], "error": None}
        entries.append(entry)
        try:
            image = read_image(path)
        except PhotoError as e:
            entry["error"] = str(e)
            failed += 1
            print(f"error: {path}: {e}", file=sys.stderr)
            continue
        entry["faces"], inputs, attention = recognizer.analyse(image, largest=args.largest, attention=bool(args.explain))
        if not args.json:
            if not entry["faces"]:
                print(f"{path}: no face found")
            for face in entry["faces"]:
                print(f"{path}: face at {tuple(face['box'])}: {face['emotion']} {face['probabilities'][face['emotion']]:.2f}")
        try:
            if args.annotate:
                write_image(os.path.join(args.annotate, stem + ".png"), draw(image, entry["faces"]))
            for k, (face, weights) in enumerate(zip(inputs, attention if attention is not None else ())):
                write_image(os.path.join(args.explain, f"{stem}_face{k + 1}_attention.png"), attention_map(face, weights))
        except PhotoError as e:
            entry["error"] = str(e)
            failed += 1
            print(f"error: {path}: {e}", file=sys.stderr)
    if args.json:
        print(json.dumps(entries, indent=2))
    return 1 if failed else 0


def open_stream(args):
    """--camera N or --video FILE -> (an opened cv2.VideoCapture, frames per second, frame count or 0),
    or a one-line UserError."""
    if args.camera is not None:
        with captured_stderr():  # V4L2's complaints about a missing device; ours follows in one line
            capture = cv2.VideoCapture(args.camera)
        if not capture.isOpened():
            raise cli.UserError(f"cannot open camera {args.camera}; is a camera connected, and is the index right "
                                "(0 is the first)?")
        return capture, capture.get(cv2.CAP_PROP_FPS) or 25.0, 0
    try:
        return video.open_capture(args.video)
    except video.VideoError as e:
        raise cli.UserError(f"{args.video}: {e}") from None


ANNOTATED = "annotated.mp4"  # --annotate's video, in OUT_DIR


def beside(csv_path, suffix):
    """OUT.csv -> OUT.timeline.png, OUT.summary.json: what is written beside the CSV."""
    return os.path.splitext(csv_path)[0] + suffix


def predict_stream(recognizer, args):
    """Camera or video: the faces of every N-th frame, tracked, their emotions smoothed.

    --csv writes one row per face per classified frame, with the summary (JSON) and the
    timeline (PNG) beside it; --annotate writes every frame with the boxes drawn, as H.264; the
    per-person summary is printed at the end.  A camera without --csv or --annotate is shown in a
    window where OpenCV has one.  Every output is written under a temporary name and renamed when
    the stream ends, so an interrupted run leaves none half-written.
    """
    capture, fps, total = open_stream(args)
    window = args.camera is not None and not (args.annotate or args.csv)
    stream = video.Video(recognizer, capture, fps, total, args.every, args.smooth, args.largest,
                         images=bool(args.annotate) or window, live=args.camera is not None)
    records, tracks, timeline, annotated = write_stream(stream, args, fps, total, window)
    print("\n".join(video.summary_table(tracks)))
    done = stream.read
    print(f"{done} frames read, {len(records)} classified, {len(tracks)} people tracked"
          + (f"; {sum(len(r['faces']) for r in records)} face rows in {args.csv}, summary and timeline beside it"
             if args.csv else "")
          + (f"; timeline in {timeline}" if timeline and not args.csv else "")
          + (f"; annotated video in {os.path.join(args.annotate, ANNOTATED)}" if annotated else ""),
          file=sys.stderr)
    if stream.ended_early():  # the container promised more frames than could be decoded
        print(f"error: {args.video}: the video ended after {done} of its {total} frames (damaged or truncated); "
              "what was written holds those frames", file=sys.stderr)
        return 1
    return 0


def show(record):
    """One frame in a window -> whether the user pressed q."""
    try:
        cv2.imshow("emotions (q quits)", draw(record["image"], record["faces"]))
        return cv2.waitKey(1) & 0xFF == ord("q")
    except cv2.error:  # a headless OpenCV build has no windows
        raise cli.UserError("this OpenCV has no display windows; pass --annotate OUT_DIR or --csv OUT.csv "
                            "to save the results") from None


def write_stream(stream, args, fps, total, window):
    """Read the stream to its end, writing --csv's rows, the annotated video, then the summary and the
    timeline -> (classified frame records, the per-person summary, the timeline's path, whether a
    video was written).  Each output is written under a temporary name and put in place when the
    stream has ended; an error or Ctrl-C removes the temporaries (files.atomic_*), and leaves what
    was there before."""
    from tqdm import tqdm
    writer, table, records = None, None, []
    progress = tqdm(total=total or None, unit="frame", disable=not args.video, file=sys.stderr)
    with contextlib.ExitStack() as outputs:
        outputs.callback(stream.close)
        outputs.callback(progress.close)
        # Put in place last to first: the summary is entered before the CSV, so it lands only after the
        # CSV did (a full disk at the CSV leaves neither, never a summary without its rows).
        summary = outputs.enter_context(files.atomic_write(beside(args.csv, ".summary.json"))) if args.csv else None
        if args.csv:
            table = csv.writer(outputs.enter_context(files.atomic_write(args.csv, newline="")))
            table.writerow(video.COLUMNS)
        for record in stream:
            progress.update()
            if record["classified"]:
                records.append({k: v for k, v in record.items() if k != "image"})
                if table:
                    table.writerows(video.csv_cells(row) for row in video.rows(records[-1:]))
            if args.annotate:
                if writer is None:
                    tmp = outputs.enter_context(files.atomic_path(os.path.join(args.annotate, ANNOTATED)))
                    name = outputs.enter_context(files.c_path(tmp))  # any folder name, even one not UTF-8
                    writer = video.AnnotatedVideo(name, fps, record["image"].shape[1::-1])
                    outputs.callback(writer.close)  # before the file is put in place
                writer.write(draw(record["image"], record["faces"]))
            if window and show(record):
                break
        tracks = video.summary(records, args.every / fps)
        timeline = args.timeline or (beside(args.csv, ".timeline.png") if args.csv else None)
        if summary:
            json.dump({"source": args.video or f"camera {args.camera}", "fps": fps, "every": args.every,
                       "smooth_s": args.smooth, "tracks": tracks}, summary, indent=1)
        if timeline:
            video.plot_timeline(records, timeline)
    return records, tracks, timeline, writer is not None


def add_options(parser):
    parser.add_argument("paths", nargs="*", metavar="PATH", help="image files or folders of them (walked recursively)")
    cli.add_model_options(parser, default=DEFAULT_MODEL)  # a shipped NAME runs its exported model.tflite (no TensorFlow)
    parser.add_argument("--detector", default="yunet", choices=DETECTORS,
                        help="face detector: yunet (a small CNN, with landmarks, default) or haar (OpenCV's cascade, boxes only)")
    parser.add_argument("--min-score", type=float, default=MIN_SCORE, metavar="S",
                        help="the YuNet score a face needs, in (0, 1]: higher finds fewer false faces and misses more "
                             "real ones (default: %(default)s; docs/photos.md has the measured trade-off)")
    parser.add_argument("--json", action="store_true", help="print a JSON list of {path, faces, error}")
    parser.add_argument("--annotate", metavar="OUT_DIR", help="write each image (or the video) with boxes and emotions drawn")
    parser.add_argument("--no-detect", action="store_true", help="treat each whole image as one face")
    parser.add_argument("--largest", action="store_true", help="keep only the largest face of each image or frame")
    parser.add_argument("--explain", metavar="OUT_DIR", help="save the local attention heat map of each face (ACNN-ALSTM)")
    stream = parser.add_mutually_exclusive_group()
    stream.add_argument("--camera", type=int, metavar="N", help="classify faces live from camera N (0 is the first)")
    stream.add_argument("--video", metavar="FILE", help="classify faces in a video file")
    parser.add_argument("--csv", metavar="OUT.csv", help="with --video/--camera: one row per face per frame "
                        "(frame, time_s, face, x, y, w, h, emotion, then the 7 probabilities)")
    parser.add_argument("--every", type=int, default=1, metavar="N", help="with --video/--camera: classify every N-th frame (default: 1)")
    parser.add_argument("--smooth", type=float, default=video.SMOOTH, metavar="SECONDS",
                        help="with --video/--camera: each person's emotion is the average of their last SECONDS or so, "
                             "weighted towards the latest (default: %(default)s; 0 turns it off)")
    parser.add_argument("--timeline", metavar="OUT.png", help="with --video/--camera: the plot of each person's emotions "
                        "over time (default: beside --csv, as OUT.timeline.png)")
    cli.add_overwrite(parser, "replace --csv, --timeline and the annotated video even where a file there was not "
                              "written by this toolkit (files it wrote are replaced without asking)")
    parser.add_argument("--max-pixels", type=int, default=photos.MAX_PIXELS, metavar="N",
                        help="refuse images over N pixels, before decoding them (default: %(default)s)")


def parse_args(argv=None, prog=None):
    """-> the options, checked: each wrong one is parser.error's one line."""
    parser = cli.ArgumentParser(__doc__, prog=prog)
    add_options(parser)
    args = parser.parse_args(argv)
    if args.max_pixels < 1:
        parser.error(f"--max-pixels must be at least 1, got {args.max_pixels}")
    if not 0 < args.min_score <= 1:  # NaN fails this too
        parser.error(f"--min-score must be in (0, 1], got {args.min_score}")
    photos.MAX_PIXELS = args.max_pixels
    os.environ["OPENCV_IO_MAX_IMAGE_PIXELS"] = str(args.max_pixels)  # OpenCV reads it at its first decode
    streaming = args.camera is not None or args.video is not None
    if streaming and args.paths:
        parser.error(f"image paths ({' '.join(args.paths)}) cannot be combined with --video or --camera; run them separately")
    if not args.paths and not streaming:
        parser.error("give at least one image file or folder, or --camera / --video")
    if not streaming and (args.csv or args.every != 1 or args.timeline or args.smooth != video.SMOOTH):
        parser.error("--csv, --every, --smooth and --timeline apply to --video and --camera only")
    if not (0 <= args.smooth < float("inf")):  # NaN fails this too
        parser.error(f"--smooth must be 0 (off) or a number of seconds, got {args.smooth}")
    if args.every < 1:
        parser.error(f"--every must be at least 1, got {args.every}")
    if args.camera is not None and not 0 <= args.camera < 2 ** 31:
        parser.error(f"--camera must be a camera index, 0 or more; got {args.camera}")
    if streaming and args.explain:
        parser.error("--explain applies to image files only")
    if streaming and args.annotate and importlib.util.find_spec("av") is None:
        raise cli.UserError("--annotate on a video writes H.264 through PyAV, which is not installed: "
                            + cli.install_line("video"))
    args.streaming = streaming
    return args


def prepare_outputs(args, path):
    """files.check_outputs's rule for every output of this run, then their folders made: before any work."""
    from ferkit import backends
    streaming = args.streaming
    inputs = (args.paths or ([args.video] if args.video else [])) + backends.model_inputs(path)
    timeline = args.timeline or (beside(args.csv, ".timeline.png") if args.csv else None)
    files.check_outputs([("--annotate", args.annotate, "folder"), ("--explain", args.explain, "folder"),
                         ("--annotate's video", streaming and args.annotate and os.path.join(args.annotate, ANNOTATED),
                          "file"),
                         ("--csv", args.csv, "file"), ("--timeline", timeline, "file"),
                         ("--csv's summary", args.csv and beside(args.csv, ".summary.json"), "file")],
                        inputs=inputs, overwrite=args.overwrite)
    for flag, out in (("--annotate", args.annotate), ("--explain", args.explain)):
        if out:
            cli.output_folder(out, flag)
    for flag, out in (("--csv", args.csv), ("--timeline", timeline)):
        if out:
            cli.output_folder(os.path.dirname(os.path.abspath(out)), flag)


def main(argv=None, prog=None):
    args = parse_args(argv, prog)
    from ferkit import backends
    path = backends.resolve(args.checkpoint, args.model)
    prepare_outputs(args, path)
    backends.check(path)  # a wrong name or folder: before TensorFlow loads
    from ferkit.recognizer import Recognizer
    recognizer = Recognizer(checkpoint=path, detector=None if args.no_detect else args.detector, min_score=args.min_score)
    if args.explain and "local_attention" not in recognizer.classifier.extras:
        raise cli.UserError(f"--explain needs a model with local attention; {recognizer.name} has none (try --model acnn_alstm)")
    return (predict_stream if args.streaming else predict_photos)(recognizer, args)
