"""Soft targets for distillation: an ensemble's averaged probabilities on every Training face, computed once.

    python tools/teacher_probs.py MODEL [MODEL ...] [--out data/teacher.npz] [--data data/fer2013.npz] [--no-tta]

MODEL: a shipped model's name, or anything evaluate.py --checkpoint takes (a
checkpoint folder, a SavedModel folder, a .tflite file from export.py).  Each
teacher's probabilities are averaged over the 10 test-time views
(ferkit.faces.tta_views; --no-tta: the face alone), then over the teachers.
train.py --teacher OUT mixes them into its targets (README, "A stronger ACNN-ALSTM").

OUT (.npz): probabilities float32 (N, 7) in the order of the data's Training
rows; fingerprint, the Training split's data.fingerprint, so that train.py
refuses a file made from other data; teachers (the paths) and tta.  It is
written whole or not at all (ferkit.files.atomic_write).  The ensemble's and
each teacher's PublicTest accuracy are printed, to choose teachers by;
PrivateTest is never read.
"""
import os
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
from ferkit import backends, cli, data, files
from ferkit.dataset import NUM_CLASSES


def main():
    parser = cli.ArgumentParser(__doc__)
    parser.add_argument("teachers", nargs="+", metavar="MODEL", help="shipped model names or model paths")
    parser.add_argument("--out", default=os.path.join("data", "teacher.npz"), help="(default: %(default)s)")
    parser.add_argument("--data", default=os.path.join("data", "fer2013.npz"), help="(default: %(default)s)")
    parser.add_argument("--no-tta", action="store_true", help="the face alone, not the 10 test-time views")
    args = parser.parse_args()
    paths = [p if os.path.exists(p) else backends.resolve(model=p) for p in args.teachers]
    for path in paths:
        backends.check(path)
    cli.check_writable(os.path.dirname(os.path.abspath(args.out)), "the teacher probabilities (give --out elsewhere)")
    splits = data.load(args.data, splits=("Training", "PublicTest")).splits
    train_images, train_labels = splits["Training"]
    val_images, val_labels = splits["PublicTest"]
    train_sum = np.zeros((len(train_labels), NUM_CLASSES), np.float64)
    val_sum = np.zeros((len(val_labels), NUM_CLASSES), np.float64)
    for path in paths:
        start = time.perf_counter()
        model = backends.load(path)
        train_probs = model.predict(train_images, tta=not args.no_tta)
        val_probs = model.predict(val_images, tta=not args.no_tta)
        model.close()
        train_sum += train_probs
        val_sum += val_probs
        print(f"{path}: Training {np.mean(train_probs.argmax(1) == train_labels):.4f}, "
              f"PublicTest {np.mean(val_probs.argmax(1) == val_labels):.4f} ({time.perf_counter() - start:.0f} s)")
    probabilities = (train_sum / len(paths)).astype(np.float32)
    print(f"ensemble of {len(paths)}: Training {np.mean(probabilities.argmax(1) == train_labels):.4f}, "
          f"PublicTest {np.mean(val_sum.argmax(1) == val_labels):.4f}")
    with files.atomic_write(args.out, "wb") as f:
        np.savez(f, probabilities=probabilities, fingerprint=data.fingerprint(train_images, train_labels),
                 teachers=np.array(paths), tta=not args.no_tta)
    print(f"wrote {args.out}: {probabilities.shape[0]} x {probabilities.shape[1]} probabilities")


if __name__ == "__main__":
    cli.run(main)
