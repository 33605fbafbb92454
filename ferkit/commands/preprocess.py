"""Turn FER-2013, as downloaded, into the .npz cache that training reads.

    ferkit preprocess [--input PATH] [--out data/fer2013.npz] [--skip-bad] [--ferplus fer2013new.csv]
    (python preprocess.py takes the same options)

Reads fer2013.csv (plain or gzip), Kaggle's fer2013.tar.gz, icml_face_data.csv,
the newer competition's train.csv (a validation split is carved out of it),
or an image-folder copy (train/<emotion>/, test/<emotion>/).  Writes
<Split>_images uint8 (N, 48, 48, 1) and <Split>_labels one-hot (N, 7) for
each of Training, PublicTest, PrivateTest present, and prints class counts.
--input was --csv (which still works, with a note): in predict --csv names an output.
"""
import os
import sys
import time

from ferkit import cli, data, files, settings
from ferkit.dataset import CACHE

DEFAULT_INPUT = next((p for p in ("data/fer2013.csv", "data/fer2013.csv.gz", "data/fer2013.tar.gz")
                    if os.path.exists(p)), "data/fer2013.csv")


MIN_AGREEMENT = 0.4        # between the 66% of aligned votes and the 18% of votes one row off
MIN_FACES_TO_TELL = 200    # enough clear faces for the agreement to say which


def ferplus_votes(path, loaded, source):
    """FER+ votes per split, checked to line up row for row with the FER-2013 data just read."""
    from ferkit import ferplus
    votes = ferplus.read_votes(path)
    for split, (images, labels) in loaded.splits.items():
        have = len(votes.get(split, ()))
        if have != len(labels) or loaded.skipped or loaded.notes:
            raise cli.UserError(f"{path}: {have} {split} rows, but {source} gave {len(labels)}; FER+ lines up with "
                                "the original fer2013.csv row by row (all rows read, no --skip-bad, not train.csv "
                                "or an image folder)")
        fer_labels, clear = ferplus.majority(votes[split])
        agree = (fer_labels[clear] == labels[clear]).mean() if clear.any() else 0.0
        print(f"FER+ {split}: {clear.sum()} of {have} faces have a clear majority label; "
              f"it agrees with FER-2013's on {agree:.1%} of them")
        # Aligned, FER+'s majority agrees with FER-2013's label on about 66% of the faces of every split;
        # votes shifted by a row agree on about 18% (chance, weighted by the class sizes).  The Image name
        # column cannot tell: its numbers skip, and jump, against the row numbers.
        if clear.sum() >= MIN_FACES_TO_TELL and agree < MIN_AGREEMENT:
            raise cli.UserError(f"{path}: its {split} votes do not line up with {source}'s rows: FER+'s majority "
                                f"agrees with FER-2013's label on {agree:.1%} of the faces, where aligned files "
                                f"agree on about 66%; nothing was written. Use the fer2013new.csv that belongs to "
                                "this fer2013.csv, unedited")
    return votes


def parse_args(argv=None, prog=None):
    parser = cli.ArgumentParser(__doc__, prog=prog)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--input", default=DEFAULT_INPUT, metavar="PATH",
                        help=f"the download: a CSV, .csv.gz, .tar.gz, .zip or image folder (default: {DEFAULT_INPUT})")
    source.add_argument("--csv", dest="old_csv", metavar="PATH",
                        help="the old spelling of --input (in predict --csv names an output)")
    parser.add_argument("--out", default=CACHE, help="cache to write (default: %(default)s)")
    parser.add_argument("--skip-bad", action="store_true",
                        help="leave out malformed rows or unreadable images and list them, instead of stopping")
    parser.add_argument("--seed", type=int, default=0, help="seed of any carved validation split (default: %(default)s)")
    cli.add_overwrite(parser, "replace --out even if it is a file that preprocess did not write")
    settings.add_options(parser, ("label_map", "faces"))
    parser.add_argument("--ferplus", metavar="PATH",
                        help="FER+'s fer2013new.csv: store its label votes in the cache too (rows line up with fer2013.csv's)")
    args = parser.parse_args(argv)
    if not 0 <= args.seed < 2 ** 32:
        parser.error(f"--seed must be in 0..{2 ** 32 - 1}, got {args.seed}")
    if args.old_csv:
        print(f"note: --csv is now --input in preprocess (--csv {args.old_csv} still works)", file=sys.stderr)
        args.input = args.old_csv
    return args


def main(argv=None, prog=None):
    args = parse_args(argv, prog)
    files.check_outputs([("--out", args.out, "file")], inputs=[args.input, args.ferplus], overwrite=args.overwrite)
    start = time.perf_counter()
    loaded = data.load(args.input, skip_bad=args.skip_bad, seed=args.seed, label_map=args.label_map, faces=args.faces)
    for note in loaded.notes:
        print(f"note: {note}")
    if loaded.skipped:
        print(f"skipped {len(loaded.skipped)} bad row(s):")
        for where, what in loaded.skipped[:20]:
            print(f"  {where}: {what}")
        if len(loaded.skipped) > 20:
            print(f"  ... and {len(loaded.skipped) - 20} more")
    votes = ferplus_votes(args.ferplus, loaded, args.input) if args.ferplus else None
    data.save_cache(args.out, loaded.splits, ferplus=votes, sources=loaded.sources)
    print(data.class_count_table(loaded.splits))
    print(f"wrote {args.out} in {time.perf_counter() - start:.1f} s")
