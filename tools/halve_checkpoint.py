"""Store a finished checkpoint's best/ weights as float16: half the bytes, for shipping.

    python tools/halve_checkpoint.py ferkit/pretrained/NAME [ferkit/pretrained/NAME ...]

The shipped models together must stay small enough to commit (README, "Results").
float16 keeps 11 significant bits, far more than the differences between two
training runs; ferkit.checkpoints.restore widens the weights back to float32 on
load, so evaluate.py, predict.py, export.py and train.py --init-from read them
as before.  Run evaluate.py again afterwards: the reports beside the weights
must describe the weights that are shipped.

Only best/ of a finished folder (state.json says finished, or the folder has
no last/ to resume from) is rewritten, and only floating-point tensors.  The new
files are written beside the old ones and moved over them one by one, the index
last (ferkit.checkpoints.rewrite): a run interrupted before the moves leaves the
old checkpoint, and in the microseconds between two moves a mix that is refused
as damaged, never read as weights.
"""
from ferkit import checkpoints, cli


def main():
    parser = cli.ArgumentParser(__doc__)
    parser.add_argument("folders", nargs="+", metavar="DIR", help="checkpoint folders written by train.py")
    args = parser.parse_args()
    for folder in args.folders:
        before, after = checkpoints.halve(folder)
        print(f"{folder}: {before / 1e6:.2f} MB -> {after / 1e6:.2f} MB")


if __name__ == "__main__":
    cli.run(main)
