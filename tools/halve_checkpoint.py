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
last, so an interrupted run leaves either the old or the new checkpoint readable.
"""
import os
import shutil
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
from ferkit import checkpoints, cli


def halve(folder):
    """Rewrite folder/best's float32 tensors as float16; returns (bytes before, bytes after)."""
    tf = cli.quiet_tensorflow()
    checkpoints.read_config(folder)
    state = os.path.join(folder, "state.json")
    if os.path.isdir(os.path.join(folder, "last")) and os.listdir(os.path.join(folder, "last")):
        if not (os.path.exists(state) and checkpoints.read_json(state).get("finished")):
            raise cli.UserError(f"{folder}: training has not finished (last/ holds a resumable state); "
                                "halve only finished models")
    path = checkpoints.latest(folder, "best")
    if path is None:
        raise cli.UserError(f"{folder}: no weights in best/")
    stored = tf.train.load_checkpoint(path)
    values = {name: stored.get_tensor(name) for name in stored.get_variable_to_shape_map()}
    sub, stem = os.path.dirname(path), os.path.basename(path)
    before = sum(os.path.getsize(os.path.join(sub, n)) for n in os.listdir(sub) if n.startswith(stem + "."))
    work = tempfile.mkdtemp(dir=sub, prefix=".halve-")
    try:
        with tf.Graph().as_default():
            variables = [tf.Variable(v.astype("float16") if v.dtype.kind == "f" else v, name=n) for n, v in values.items()]
            with tf.Session() as session:
                session.run(tf.global_variables_initializer())
                tf.train.Saver(variables).save(session, os.path.join(work, stem), write_meta_graph=False, write_state=False)
        names = sorted(os.listdir(work), key=lambda n: n.endswith(".index"))  # data shards first, index last
        for name in names:
            os.replace(os.path.join(work, name), os.path.join(sub, name))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    after = sum(os.path.getsize(os.path.join(sub, n)) for n in os.listdir(sub) if n.startswith(stem + "."))
    return before, after


def main():
    parser = cli.ArgumentParser(__doc__)
    parser.add_argument("folders", nargs="+", metavar="DIR", help="checkpoint folders written by train.py")
    args = parser.parse_args()
    for folder in args.folders:
        before, after = halve(folder)
        print(f"{folder}: {before / 1e6:.2f} MB -> {after / 1e6:.2f} MB")


if __name__ == "__main__":
    cli.run(main)
