"""Re-encode the PNG pictures in folders as 256-colour PNGs: the same plots at a third of the bytes.

    python tools/compact_pictures.py ferkit/pretrained/NAME [ferkit/pretrained/NAME ...]

evaluate.py and train.py write their confusion matrices and curves this way
(ferkit.files.save_figure); this puts pictures written before that in the same
form, so the shipped models stay within their 40 MB (README, "Results").  A
release step, like tools/halve_checkpoint.py: each file is replaced whole
(ferkit.files), and a picture already in 256 colours is left as it is.
"""
import os

from ferkit import cli, files


def main():
    parser = cli.ArgumentParser(__doc__)
    parser.add_argument("folders", nargs="+", metavar="DIR", help="folders whose *.png files to re-encode")
    args = parser.parse_args()
    for folder in args.folders:
        if not os.path.isdir(folder):
            raise cli.UserError(f"{folder}: not a folder")
        before = after = 0
        for name in sorted(os.listdir(folder)):
            if not name.endswith(".png"):
                continue
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                data = f.read()
            try:
                compact = files.compact_png(data)
            except OSError as e:  # Pillow: not a picture it can read
                raise cli.UserError(f"{path}: not a readable PNG ({e}); leaving it and the rest of {folder}") from None
            if compact != data:
                with files.atomic_write(path, "wb") as f:
                    f.write(compact)
            before, after = before + len(data), after + len(compact)
        print(f"{folder}: pictures {before / 1e6:.2f} MB -> {after / 1e6:.2f} MB")


if __name__ == "__main__":
    cli.run(main)
