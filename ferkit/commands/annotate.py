"""Annotate photo archives and hours of video on Ray: one row per face, as a Parquet dataset.

    ferkit annotate SOURCES... --out DIR [--address ADDRESS] [--model acnn_alstm_ferplus | --checkpoint PATH]
                    [--every N] [--segment-seconds S] [--workers N] [--batch-size N] [--overwrite] [--verbose]
    (python annotate.py takes the same options; --batch was the old name of --batch-size)

SOURCES are image files, video files, folders of both (walked recursively, hidden files skipped)
or .txt files listing paths, one a line.  The work is split into shards (photos in batches, each
video in segments of --segment-seconds, so one long video is spread over every worker) and run by
--workers Ray actors, each with the model and detector loaded once.  Without --address, Ray starts
inside this process on this machine's cores and stops at the end; --address HOST:PORT (or auto)
joins a running cluster (docs/annotate.md: starting one, and how its nodes see the inputs).

Written under DIR: faces/*.parquet (one row per face: source, frame, time_s, track, face, x, y, w, h, score,
landmarks, emotion, the 7 probabilities), errors/*.parquet (one row per file that could not be
read, with the reason), summary.json.  Each shard is written whole or not at all, so running the
same command again after an interruption does only what is left; --overwrite starts afresh.
Exit status 1 if any input could not be read.
"""
import json
import os
import sys

from ferkit import cli
from ferkit.backends import DEFAULT_MODEL


def list_sources(sources):
    """SOURCES -> (photos, videos), each a list of paths; a missing source is a one-line error."""
    from ferkit.photos import IMAGE_EXTENSIONS, list_images
    from ferkit.video import VIDEO_EXTENSIONS
    paths = []
    for source in sources:
        if not os.path.exists(source):
            raise cli.UserError(f"{source}: no such file or folder")
        if os.path.isfile(source) and source.lower().endswith(".txt"):
            with open(source, encoding="utf-8", errors="surrogateescape") as f:
                listed = [line.strip() for line in f if line.strip() and not line.startswith("#")]
            paths += [p for p in listed]
        else:
            paths.append(source)
    for p in paths:
        if not os.path.exists(p):
            raise cli.UserError(f"{p}: no such file or folder (listed in SOURCES)")
    files = [path for path, _ in list_images(paths, IMAGE_EXTENSIONS + VIDEO_EXTENSIONS)]
    videos = [p for p in files if p.lower().endswith(VIDEO_EXTENSIONS)]
    return [p for p in files if not p.lower().endswith(VIDEO_EXTENSIONS)], videos, paths


def prepare_out(out, job, sources, overwrite):
    """Refuse an output folder inside or holding an input, or holding a dataset made otherwise;
    --overwrite removes our own files there (faces/, errors/, job.json, summary.json), nothing else."""
    from ferkit import files
    files.check_outputs([("--out", out, "folder")], inputs=sources)
    cli.output_folder(out, "--out")
    described = os.path.join(out, "job.json")
    if overwrite:
        ours = [os.path.join(out, name) for name in ("job.json", "summary.json") if os.path.exists(os.path.join(out, name))]
        for name in ("faces", "errors"):
            folder = os.path.join(out, name)
            for entry in sorted(os.listdir(folder)) if os.path.isdir(folder) else ():
                path = os.path.join(folder, entry)
                if not (os.path.isfile(path) and not os.path.islink(path) and files.written_by_us(path)):
                    raise cli.UserError(f"--overwrite {out}: {path} was not written by annotate.py, so it is not "
                                        "removed (nothing was); move it away, or choose another --out")
                ours.append(path)
        for path in ours:  # every one checked first: an error above leaves the whole dataset as it was
            os.remove(path)
    elif os.path.exists(described):
        try:
            earlier = cli.read_json(described)
        except (OSError, ValueError):
            raise cli.UserError(f"{described}: unreadable; --overwrite starts the dataset afresh") from None
        if earlier != job.describe():
            changed = ", ".join(f"{k} {earlier.get(k)!r} -> {v!r}" for k, v in job.describe().items() if earlier.get(k) != v)
            raise cli.UserError(f"--out {out}: holds a dataset made otherwise ({changed}); choose another folder, "
                                "or --overwrite to replace it")
    elif os.path.isdir(os.path.join(out, "faces")):
        raise cli.UserError(f"--out {out}: has a faces/ folder but no job.json (not ours, or damaged); choose another "
                            "folder, or --overwrite")
    for name in ("faces", "errors"):
        os.makedirs(os.path.join(out, name), exist_ok=True)
        files.remove_stale_temporaries(os.path.join(out, name))
    with files.atomic_write(described) as f:
        json.dump(job.describe(), f, indent=1)


def parse_args(argv=None, prog=None):
    parser = cli.ArgumentParser(__doc__, prog=prog, renamed={"--batch": "--batch-size"})
    parser.add_argument("sources", nargs="+", metavar="SOURCES", help="image and video files, folders, or .txt lists")
    parser.add_argument("--out", required=True, metavar="DIR", help="the dataset's folder")
    parser.add_argument("--address", help="a running Ray cluster (HOST:PORT, or auto); default: Ray inside this process")
    cli.add_model_options(parser, default=DEFAULT_MODEL)
    parser.add_argument("--every", type=int, default=1, metavar="N", help="classify every N-th video frame (default: 1)")
    parser.add_argument("--segment-seconds", type=float, default=60, metavar="S",
                        help="video segment length, the unit of work (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=os.cpu_count(), metavar="N",
                        help="actors, one CPU each (default: this machine's cores, %(default)s)")
    cli.add_batch_size(parser, 64, "photos per shard")
    cli.add_overwrite(parser, "replace the dataset in --out (only files it wrote are removed)")
    parser.add_argument("--verbose", action="store_true", help="let Ray's own logs through")
    args = parser.parse_args(argv)
    if args.every < 1 or args.workers < 1 or args.batch_size < 1:
        parser.error("--every, --workers and --batch-size must be at least 1")
    if not 0 < args.segment_seconds < float("inf"):
        parser.error(f"--segment-seconds must be above 0, got {args.segment_seconds}")
    return args


def main(argv=None, prog=None):
    args = parse_args(argv, prog)
    from ferkit import backends
    from ferkit.annotate import Job, run
    model_path = os.path.abspath(backends.resolve(args.checkpoint, args.model))
    backends.check(model_path)
    photos, videos, sources = list_sources(args.sources)
    if not photos and not videos:
        raise cli.UserError(f"no image or video files in {' '.join(args.sources)}")
    job = Job(photos, videos, os.path.abspath(args.out), model_path, args.checkpoint or args.model,
              every=args.every, segment_seconds=args.segment_seconds, batch=args.batch_size)
    prepare_out(args.out, job, sources, args.overwrite)
    print(f"{len(photos)} photos, {len(videos)} videos -> {args.out} ({job.model}, {args.workers} workers, "
          f"{'Ray at ' + args.address if args.address else 'Ray on this machine'})", file=sys.stderr)
    summary = run(job, args.workers, address=args.address, verbose=args.verbose)
    rate = summary["this_run"]["per_second"]
    print(f"{summary['photos']} photos and {summary['frames']} frames: {summary['faces']} faces, "
          f"{summary['errors']} errors; {summary['this_run']['shards']} shards run, {summary['this_run']['skipped']} "
          f"already done; {f'{rate} photos or frames/s this run' if rate is not None else 'nothing left to run'}; "
          f"in {args.out}")
    return 1 if summary["errors"] else 0
