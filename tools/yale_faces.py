"""Manifests for the Yale Face Database: a public collection with people's ids, to measure fine-tuning.

    python tools/yale_faces.py YALEFACES_DIR --out DIR

YALEFACES_DIR holds the database's 165 files subjectNN.KIND (GIF images, 320x243, 15 people; Belhumeur,
Hespanha and Kriegman, 1997).  Four of its eleven kinds are expressions the models have: happy, sad,
surprised and normal (neutral); sleepy, wink, the lighting and glasses shots are left out.  Writes
into DIR (paths in them point at YALEFACES_DIR; nothing of the database is copied):

  all.csv              path,emotion,subject: the 60 expression photos
  fold0.csv ... 2.csv  the same rows with a split column: five people test (fold k: people 5k+1 to
                       5k+5), of the other ten the last three val and seven train

Then, per fold (docs/experiments.md, "Fine-tuning on other people"):

    ferkit evaluate --model acnn_alstm_ferplus --data DIR/fold0.csv --split PrivateTest
    ferkit train --arch acnn_alstm --init-from acnn_alstm_ferplus --data DIR/fold0.csv --batch-size 8 --out runs/yale/fold0
    ferkit evaluate --checkpoint runs/yale/fold0 --data DIR/fold0.csv --split PrivateTest
"""
import argparse
import csv
import os
import sys

EXPRESSIONS = {"happy": "happy", "sad": "sad", "surprised": "surprise", "normal": "neutral"}
PEOPLE = range(1, 16)


def rows(folder):
    """[(path, emotion, subject)] of the expression photos; SystemExit naming the first missing file."""
    found = []
    for person in PEOPLE:
        for kind, emotion in EXPRESSIONS.items():
            path = os.path.join(os.path.abspath(folder), f"subject{person:02d}.{kind}")
            if not os.path.isfile(path):
                sys.exit(f"error: {path}: missing; give the folder that holds the Yale database's subjectNN.KIND files")
            found.append((path, emotion, f"s{person:02d}"))
    return found


def split_of(person, fold):
    """The fold's split of one person (1-15): test, val or train."""
    test = range(5 * fold + 1, 5 * fold + 6)
    rest = [p for p in PEOPLE if p not in test]
    return "test" if person in test else "val" if person in rest[-3:] else "train"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", help="the Yale database's folder (subject01.happy ...)")
    parser.add_argument("--out", required=True, help="folder for the manifests")
    args = parser.parse_args()
    found = rows(args.folder)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "all.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "emotion", "subject"])
        writer.writerows(found)
    for fold in range(3):
        with open(os.path.join(args.out, f"fold{fold}.csv"), "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["path", "emotion", "subject", "split"])
            writer.writerows((*row, split_of(int(row[2][1:]), fold)) for row in found)
    print(f"{len(found)} photos of {len(PEOPLE)} people -> {args.out}/all.csv, fold0.csv, fold1.csv, fold2.csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
