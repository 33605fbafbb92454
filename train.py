"""Train a model on FER-2013's Training split, choosing checkpoints on PublicTest.

    python train.py --model acnn_alstm [--data PATH] [--epochs N] [--batch-size N]
                    [--optimizer adam|sgd] [--lr X] [--checkpoint-dir runs/<model>]
                    [--seed N] [--overwrite]

--data takes the cache preprocess.py writes or any layout it reads.  After
each epoch the model is scored on PublicTest; the best weights go to
<dir>/best, everything needed to resume to <dir>/last.  PrivateTest is never
read.  Ctrl-C saves and stops; the same command again resumes where it stopped,
also after the process was killed (kill -9, power loss): state.json is written
last, and whatever it does not name is removed on the next start.  A folder
holding a finished model (such as the shipped ones) is never trained into
unless --overwrite says so.
"""
import argparse
import csv
import math
import os
import signal
import time
from types import SimpleNamespace

import numpy as np

import models
from ferkit import cli

# Settings that shape the schedule: resuming with other values would not
# continue the same run, so a folder refuses them.
SCHEDULE_KEYS = ("epochs", "batch_size", "lr", "warmup_epochs", "label_smoothing", "seed", "data_size", "labels",
                 "erase", "teacher", "distill", "optimizer", "momentum", "mixup", "bf16", "ema")
# Peak learning rates: Adam's usual 1e-3; SGD's 0.1 at batch 128 for batch-normalised
# CNNs, scaled to our batch of 64.
DEFAULT_LR = {"adam": 1e-3, "sgd": 0.05}
LOG_FIELDS = ("epoch", "step", "lr", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "seconds", "images_per_s",
              "ema_val_accuracy")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, choices=sorted(models.MODELS), help="which model to train")
    parser.add_argument("--overwrite", action="store_true",
                        help="train into a folder that holds a finished model, replacing it (its weights, log and reports)")
    parser.add_argument("--data", default="data/fer2013.npz", help="preprocess cache or any FER-2013 download (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=30, help="epochs of the cosine schedule (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=64, help="(default: %(default)s)")
    parser.add_argument("--optimizer", default="adam", choices=("adam", "sgd"),
                        help="Adam, or SGD with Nesterov momentum (--momentum) (default: %(default)s)")
    parser.add_argument("--lr", type=float,
                        help="peak learning rate (default: 1e-3 for adam, 0.05 for sgd)")
    parser.add_argument("--momentum", type=float, default=0.9, help="Nesterov momentum of --optimizer sgd (default: %(default)s)")
    parser.add_argument("--warmup-epochs", type=float, default=1.0, help="linear warm-up before the cosine decay (default: %(default)s)")
    parser.add_argument("--label-smoothing", type=float, default=0.1, help="(default: %(default)s)")
    parser.add_argument("--patience", type=int, default=10, help="stop after this many epochs without a better PublicTest accuracy (default: %(default)s)")
    parser.add_argument("--checkpoint-dir", help="where to save (default: runs/<model>, in the current folder)")
    parser.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="override a model hyperparameter, e.g. --set dropout=0.4 (repeatable)")
    parser.add_argument("--max-steps", type=int, help="stop after this many steps in all (for smoke tests)")
    parser.add_argument("--labels", default="fer2013", choices=("fer2013", "ferplus"),
                        help="train on FER-2013's labels, or on FER+'s vote shares over the 7 emotions (soft targets), "
                             "choosing checkpoints on FER+'s PublicTest majority labels; ferplus needs a cache made "
                             "with preprocess.py --ferplus (default: %(default)s)")
    parser.add_argument("--init-from", metavar="DIR",
                        help="start from the best weights of this checkpoint folder (same model and hyperparameters) "
                             "instead of random ones: fine-tuning")
    parser.add_argument("--erase", type=float, default=0.0, metavar="P",
                        help="random erasing: blank one random rectangle (2-20%% of the face) of each training face "
                             "with probability P (default: %(default)s, off)")
    parser.add_argument("--mixup", type=float, default=0.0, metavar="ALPHA",
                        help="mixup: train on each face blended with another face of its batch, weight "
                             "max(u, 1 - u) with u ~ Beta(ALPHA, ALPHA), the targets blended alike "
                             "(default: %(default)s, off; 0.2 is usual)")
    parser.add_argument("--teacher", metavar="NPZ",
                        help="distillation: soft targets from tools/teacher_probs.py, mixed into the labels "
                             "(--distill); made from the same --data")
    parser.add_argument("--distill", type=float, default=0.5, metavar="W",
                        help="with --teacher, the targets are W x the teachers' probabilities + (1 - W) x the label "
                             "(default: %(default)s)")
    parser.add_argument("--bf16", action="store_true",
                        help="bfloat16 mixed precision: oneDNN runs the convolutions and matmuls of training in "
                             "bfloat16 (weights and optimizer state stay float32); on CPUs with AVX-512 BF16 or AMX")
    parser.add_argument("--ema", type=float, default=0.0, metavar="DECAY",
                        help="keep an exponential moving average of the weights (0.999 is usual): each epoch scores "
                             "it on PublicTest too, and it becomes best/ when it beats both the raw weights and the "
                             "best so far (default: %(default)s, off)")
    args = parser.parse_args()
    check_options(parser, args)
    if args.lr is None:  # the default depends on --optimizer
        args.lr = DEFAULT_LR[args.optimizer]
    return args


def check_options(parser, args):
    """Every option in its valid range, before TensorFlow is imported or anything is written."""
    finite = lambda x: x == x and abs(x) != float("inf")  # noqa: E731
    rules = [
        (args.epochs >= 1, f"--epochs must be at least 1, got {args.epochs}"),
        (args.batch_size >= 1, f"--batch-size must be at least 1, got {args.batch_size}"),
        (args.max_steps is None or args.max_steps >= 1, f"--max-steps must be at least 1, got {args.max_steps}"),
        (args.lr is None or (finite(args.lr) and args.lr > 0), f"--lr must be a positive number (such as 1e-3), got {args.lr}"),
        (finite(args.momentum) and 0 <= args.momentum < 1, f"--momentum must be in [0, 1), got {args.momentum}"),
        (finite(args.warmup_epochs) and args.warmup_epochs >= 0, f"--warmup-epochs must be 0 or more, got {args.warmup_epochs}"),
        (finite(args.label_smoothing) and 0 <= args.label_smoothing < 1,
         f"--label-smoothing must be in [0, 1), got {args.label_smoothing}"),
        (args.patience >= 1, f"--patience must be at least 1, got {args.patience}"),
        (0 <= args.seed < 2 ** 32, f"--seed must be in 0..{2 ** 32 - 1}, got {args.seed}"),
        (finite(args.erase) and 0 <= args.erase <= 1, f"--erase must be a probability in [0, 1], got {args.erase}"),
        (finite(args.mixup) and 0 <= args.mixup <= 10, f"--mixup must be in [0, 10] (0 is off), got {args.mixup}"),
        (finite(args.distill) and 0 < args.distill <= 1, f"--distill must be in (0, 1], got {args.distill}"),
        (finite(args.ema) and 0 <= args.ema < 1, f"--ema must be a decay in [0, 1) (0 is off), got {args.ema}"),
        (not (args.teacher and args.labels == "ferplus"), "--teacher distils FER-2013 labels; it cannot be used "
                                                          "with --labels ferplus, whose targets are FER+'s votes"),
    ]
    for ok, message in rules:
        if not ok:
            parser.error(message)
    for item in args.set:
        if "=" not in item or not item.partition("=")[0]:
            parser.error(f"--set {item}: expected NAME=VALUE, such as --set dropout=0.4")


def model_hparams(name, overrides):
    """Defaults of model `name`, with NAME=VALUE overrides converted to the default's type and range-checked."""
    hparams = models.default_hparams(name)
    for item in overrides:
        key, _, value = item.partition("=")
        if key not in hparams:
            raise cli.UserError(f"--set {item}: {name} has no hyperparameter {key!r}; it has {', '.join(hparams)}")
        try:
            hparams[key] = type(hparams[key])(value)
        except ValueError:
            raise cli.UserError(f"--set {item}: {value!r} is not a {type(hparams[key]).__name__}") from None
    try:
        models.check_hparams(name, hparams)
    except ValueError as e:
        raise cli.UserError(f"--set: {e}") from None
    return hparams


def step_of(path):
    """checkpoint path prefix .../model.ckpt-STEP -> STEP, or None."""
    return int(path.rsplit("-", 1)[1]) if path else None


def read_state(folder):
    """The committed training state of a folder, or None when it holds no training.

    state.json is the commit point of every save: it names the one best and one last
    checkpoint and holds the log rows.  Files it does not name are leftovers of a killed run.
    Folders written before it named them (the shipped ones) get the names from the index files.
    """
    from ferkit import checkpoints
    path = os.path.join(folder, "state.json")
    if not os.path.exists(path):
        return None
    try:
        state = checkpoints.read_json(path)
    except ValueError as e:
        raise cli.UserError(f"{path}: unreadable ({e}); move the folder away or pass another --checkpoint-dir") from None
    state.setdefault("best_step", step_of(checkpoints.latest(folder, "best")))
    state.setdefault("step", step_of(checkpoints.latest(folder, "last")))
    if "log" not in state and os.path.exists(os.path.join(folder, "log.csv")):
        with open(os.path.join(folder, "log.csv")) as f:
            state["log"] = list(csv.DictReader(f))[:state.get("epoch", 0)]
    return state


def is_finished(folder, config_path, state):
    """A folder holds a finished model when its training says so, or when it has best
    weights but nothing to resume from (the shipped models)."""
    from ferkit import checkpoints
    if state and state.get("finished"):
        return True
    if not os.path.exists(config_path) or not checkpoints.latest(folder, "best"):
        return False
    old = checkpoints.read_json(config_path)
    done = state and state.get("epoch", 0) >= old.get("settings", {}).get("epochs", float("inf"))
    return bool(done or not checkpoints.latest(folder, "last"))


def clear_folder(folder):
    """--overwrite: remove what train.py and evaluate.py wrote in folder (nothing else)."""
    import shutil
    for name in os.listdir(folder):
        full = os.path.join(folder, name)
        if name in ("best", "last") and os.path.isdir(full):
            shutil.rmtree(full)
        elif name in ("state.json", "log.csv", "curves.png", "config.json") or name.startswith(("events.out.tfevents", "eval_")):
            os.remove(full)


def prepare_folder(folder, config, overwrite):
    """Create or reuse the checkpoint folder -> the committed state to resume from (None: start afresh).

    Refuses a folder made for another model or schedule, and one holding a finished model
    unless overwrite.  Removes what a killed run left behind.
    """
    from ferkit import backends, checkpoints
    if backends.is_shipped(folder):
        raise cli.UserError(f"--checkpoint-dir {folder}: is a shipped model, which training never writes into "
                            "(shipped models change only through tools/ship_exports.py); pass another --checkpoint-dir, "
                            "such as runs/NAME")
    cli.output_folder(folder, "--checkpoint-dir")
    path = os.path.join(folder, checkpoints.CONFIG)
    state = read_state(folder)
    if is_finished(folder, path, state):
        if not overwrite:
            raise cli.UserError(f"{folder} holds a finished model (best/ weights, nothing to resume); nothing was changed. "
                                "Pass another --checkpoint-dir, or --overwrite to replace it")
        clear_folder(folder)
        state = None
    if os.path.exists(path):
        old = checkpoints.read_config(folder)
        if old["model"] != config["model"]:
            raise cli.UserError(f"{folder} holds a {old['model']} checkpoint, not {config['model']}; "
                                "pass another --checkpoint-dir (nothing was overwritten)")
        if state and state.get("step") is not None:
            # Settings added since a folder was written count as their default there.
            was = {"labels": "fer2013", **old["settings"]}
            changed = [k for k in SCHEDULE_KEYS if was.get(k) != config["settings"].get(k)]
            changed += [k for k in config["hparams"] if old["hparams"].get(k) != config["hparams"][k]]
            if changed:
                raise cli.UserError(f"{folder} was trained with other settings ({', '.join(changed)}: "
                                    f"{', '.join(str(was.get(k, old['hparams'].get(k))) for k in changed)}); "
                                    "rerun with the same ones to resume, or pass another --checkpoint-dir")
    checkpoints.tidy(folder, state)
    if state is None or state.get("step") is None:
        state = None
    checkpoints.write_json(path, config)
    write_log(folder, state["log"] if state and "log" in state else None)
    return state


def write_log(folder, rows):
    """log.csv from the committed log rows (atomically); rows None keeps an existing log as it is."""
    path = os.path.join(folder, "log.csv")
    if rows is None and os.path.exists(path):
        return
    tmp = f"{path}.tmp"
    with open(tmp, "w", newline="") as f:
        csv.writer(f).writerows([LOG_FIELDS] + [[r.get(k, "") for k in LOG_FIELDS] for r in rows or []])
    os.replace(tmp, path)


def fault_point(name):
    """Test hook for the kill -9 tests: FERKIT_KILL_AT=NAME:N kills this process, as SIGKILL
    would at a random moment, the N-th time it passes the point NAME of the save sequence."""
    spec = os.environ.get("FERKIT_KILL_AT", "")
    if spec.partition(":")[0] == name:
        fault_point.count = getattr(fault_point, "count", 0) + 1
        if fault_point.count == int(spec.partition(":")[2] or 1):
            os.kill(os.getpid(), signal.SIGKILL)


def init_weights(session, net, source, config):
    """Restore the model variables from source's best/ weights (fine-tuning); the optimizer starts fresh."""
    from ferkit import checkpoints
    old = checkpoints.read_config(source)
    if (old["model"], old["hparams"]) != (config["model"], config["hparams"]):
        raise cli.UserError(f"--init-from {source}: holds {old['model']} {old['hparams']}, "
                            f"not {config['model']} {config['hparams']}; fine-tune the same model")
    if checkpoints.latest(source, "best") is None:
        raise cli.UserError(f"--init-from {source}: no weights in best/")
    path = checkpoints.restore(session, net.model_variables, source, "best")
    print(f"starting from {path}")


def learning_rate(step, peak, warmup_steps, total_steps):
    """Linear warm-up to `peak`, then cosine decay to zero at total_steps (a function of the global step)."""
    import tensorflow.compat.v1 as tf
    step = tf.cast(step, tf.float32)
    warm = peak * (step + 1.0) / max(warmup_steps, 1)
    progress = tf.minimum((step - warmup_steps) / max(total_steps - warmup_steps, 1), 1.0)
    cosine = 0.5 * peak * (1.0 + tf.cos(math.pi * progress))
    return tf.where(step < warmup_steps, warm, cosine)


def ferplus_data(path, train_images, val_images):
    """--labels ferplus: Training faces with their FER+ vote shares over the 7 emotions (faces with no
    emotion votes left out), PublicTest faces with a clear FER+ majority and that label.
    -> train images, train labels (the top share, for the accuracy shown), train targets float32 (N, 7),
    PublicTest images, PublicTest labels."""
    from ferkit import data, ferplus
    votes = data.load_ferplus_votes(path, "Training")[:, list(ferplus.EMOTION_COLUMNS)].astype(np.float32)
    has_votes = votes.sum(1) > 0
    targets = votes[has_votes] / votes[has_votes].sum(1, keepdims=True)
    val_labels, clear = ferplus.majority(data.load_ferplus_votes(path, "PublicTest"))
    print(f"FER+ labels: {has_votes.sum()} of {len(votes)} Training faces with emotion votes; "
          f"{clear.sum()} of {len(clear)} PublicTest faces with a clear majority")
    return (train_images[has_votes], targets.argmax(1).astype(np.int64), targets,
            val_images[clear], val_labels[clear])


def teacher_targets(path, weight, train_images, train_labels):
    """--teacher: targets float32 (N, 7) = weight x the teachers' probabilities + (1 - weight) x one-hot labels."""
    from ferkit import data
    from ferkit.faces import NUM_CLASSES, one_hot
    try:
        with np.load(path) as f:
            probabilities, made_from = f["probabilities"], str(f["fingerprint"])
    except (OSError, ValueError, KeyError) as e:
        raise cli.UserError(f"--teacher {path}: not a file written by tools/teacher_probs.py ({e})") from None
    same_data = made_from == data.fingerprint(train_images, train_labels)
    if not same_data or probabilities.shape != (len(train_labels), NUM_CLASSES):
        raise cli.UserError(f"--teacher {path}: made from other Training faces than --data's; "
                            "run tools/teacher_probs.py again with this --data")
    return (weight * probabilities + (1.0 - weight) * one_hot(train_labels)).astype(np.float32)


def mixup(images, targets, alpha, rng):
    """Mixup (Zhang et al. 2018): images float32 (B, 48, 48, 1) and targets (B, 7), each row blended with
    another row of the batch at weight l = max(u, 1 - u), u ~ Beta(alpha, alpha) per row.
    Taking the larger weight keeps each row mostly its own face, so its int label still names the
    dominant one (the accuracy shown). -> (images, targets float32), the same shapes."""
    weight = rng.beta(alpha, alpha, size=len(images)).astype(np.float32)
    weight = np.maximum(weight, 1.0 - weight)
    other = rng.permutation(len(images))

    def blend(rows):
        w = weight.reshape((-1,) + (1,) * (rows.ndim - 1))  # one weight per row, broadcast over the rest
        return (w * rows + (1.0 - w) * rows[other]).astype(np.float32)
    return blend(images), blend(targets)


def weight_average(variables, train_op, global_step, decay):
    """--ema: an exponential moving average of `variables` (the model's, batch-norm statistics
    included), updated after every step, at decay min(decay, (1 + step) / (10 + step)) so that
    the first steps' random weights fade fast.  -> namespace: train_op (the step, then the update),
    backup / load_average / restore ops that swap the average into the variables and back,
    through float32 copies kept out of the checkpoints (local variables)."""
    import tensorflow.compat.v1 as tf
    ema = tf.train.ExponentialMovingAverage(decay, num_updates=global_step)
    with tf.control_dependencies([train_op]):
        update = ema.apply(variables)
    copies = [tf.Variable(tf.zeros(v.shape, v.dtype), trainable=False, collections=[tf.GraphKeys.LOCAL_VARIABLES],
                          name=f"{v.op.name}/raw_copy") for v in variables]
    return SimpleNamespace(
        train_op=update,
        backup=tf.group(*[c.assign(v) for v, c in zip(variables, copies)]),
        load_average=tf.group(*[v.assign(ema.average(v)) for v in variables]),
        restore=tf.group(*[v.assign(c) for v, c in zip(variables, copies)]))


def evaluate(session, net, loss, images, labels, batch_size=500):
    """Mean loss and accuracy over (images float32, labels int) with the model in inference mode."""
    total_loss, correct = 0.0, 0
    for i in range(0, len(labels), batch_size):
        x, y = images[i:i + batch_size], labels[i:i + batch_size]
        batch_loss, logits = session.run([loss, net.logits], {net.images: x, net.labels: y})
        total_loss += batch_loss * len(y)
        correct += int((logits.argmax(1) == y).sum())
    return total_loss / len(labels), correct / len(labels)


def plot_curves(log_path, out_path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    with open(log_path) as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return
    epoch = [int(r["epoch"]) for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for key, label in (("train_loss", "Training"), ("val_loss", "PublicTest")):
        ax1.plot(epoch, [float(r[key]) for r in rows], label=label)
    for key, label in (("train_accuracy", "Training (augmented)"), ("val_accuracy", "PublicTest")):
        ax2.plot(epoch, [float(r[key]) for r in rows], label=label)
    ax1.set(xlabel="epoch", ylabel="loss", title="loss")
    ax2.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(out_path, dpi=100)
    plt.close(fig)


def main():
    args = parse_args()
    from tqdm import tqdm

    from ferkit import checkpoints, data
    from ferkit.faces import NUM_CLASSES, one_hot, to_model_input
    tf = cli.quiet_tensorflow()
    folder = args.checkpoint_dir or os.path.join("runs", args.model)
    hparams = model_hparams(args.model, args.set)
    loaded = data.load(args.data, seed=args.seed, splits=("Training", "PublicTest"))  # never PrivateTest
    for note in loaded.notes:
        print(f"note: {note}")
    if len(loaded.splits.get("PublicTest", ((), ()))[1]) == 0:
        raise cli.UserError(f"{args.data}: no PublicTest faces to choose checkpoints on; give a data set with a "
                            "PublicTest split (or more Training rows, of which preprocess carves one)")
    train_images, train_labels = loaded.splits["Training"]
    val_images, val_labels = loaded.splits["PublicTest"]
    train_targets = None
    if args.labels == "ferplus":
        train_images, train_labels, train_targets, val_images, val_labels = ferplus_data(
            args.data, train_images, val_images)
    if args.teacher:
        train_targets = teacher_targets(args.teacher, args.distill, train_images, train_labels)
    train_x, val_x = to_model_input(train_images), to_model_input(val_images)

    steps_per_epoch = len(train_labels) // args.batch_size  # drop the last partial batch: stable batch norm
    if steps_per_epoch == 0:
        raise cli.UserError(f"{args.data}: {len(train_labels)} Training faces, fewer than one batch of {args.batch_size}")
    total_steps = args.epochs * steps_per_epoch
    settings = {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "warmup_epochs": args.warmup_epochs,
                "label_smoothing": args.label_smoothing, "patience": args.patience, "seed": args.seed,
                "data": args.data, "data_size": len(train_labels), "optimizer": args.optimizer, "init_from": args.init_from,
                "labels": args.labels}
    # Added later: recorded only when used, so that older folders (and the shipped ones) still match.
    settings.update({k: v for k, v in (("erase", args.erase), ("mixup", args.mixup), ("teacher", args.teacher),
                                        ("distill", args.distill if args.teacher else None), ("bf16", args.bf16),
                                        ("ema", args.ema)) if v})
    if args.optimizer == "sgd":
        settings["momentum"] = args.momentum  # 0 too: plain SGD is recorded as such
    config = {"model": args.model, "hparams": hparams, "settings": settings}
    state = prepare_folder(folder, config, args.overwrite)
    print(f"model {args.model} {config['hparams']}")
    print(f"settings {settings}")
    print(f"Training {len(train_labels)} faces, PublicTest {len(val_labels)}; {steps_per_epoch} steps/epoch; saving to {folder}")

    tf.set_random_seed(args.seed)
    net = checkpoints.build(config, augmentation=True)
    # Soft targets (N, 7) when fed (FER+ vote shares); otherwise the one-hot of the int labels, as always.
    targets = tf.placeholder_with_default(tf.one_hot(net.labels, NUM_CLASSES), [None, NUM_CLASSES], name="targets")
    total_loss, cross_entropy = models.loss(net.logits, label_smoothing=args.label_smoothing, targets=targets)
    global_step = tf.train.get_or_create_global_step()
    lr = learning_rate(global_step, args.lr, int(args.warmup_epochs * steps_per_epoch), total_steps)
    if args.optimizer == "sgd":
        optimizer = tf.train.MomentumOptimizer(lr, args.momentum, use_nesterov=True)
    else:
        optimizer = tf.train.AdamOptimizer(lr)
    train_op = optimizer.minimize(total_loss, global_step=global_step)
    averaged = weight_average(net.model_variables, train_op, global_step, args.ema) if args.ema else None
    if averaged:
        train_op = averaged.train_op
    correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(net.logits, 1, output_type=tf.int32), net.labels), tf.int32))
    summaries = tf.summary.merge([tf.summary.scalar("loss", cross_entropy), tf.summary.scalar("learning_rate", lr),
                                  tf.summary.scalar("accuracy", tf.cast(correct, tf.float32) / tf.cast(tf.shape(net.labels)[0], tf.float32))])
    # max_to_keep=None: TensorFlow deletes nothing; commit() keeps exactly the checkpoints state.json names.
    best_saver = tf.train.Saver(net.model_variables, max_to_keep=None)
    last_saver = tf.train.Saver(max_to_keep=None)
    n_params = sum(int(np.prod(v.shape)) for v in tf.trainable_variables())
    print(f"{n_params:,} parameters")

    state_path = os.path.join(folder, "state.json")
    with tf.Session(config=checkpoints.session_config(args.bf16)) as session:
        def save(which, saver, step):
            # write_state=False: the index file moves to the new checkpoint only after state.json commits it.
            saver.save(session, os.path.join(folder, which, checkpoints.CHECKPOINT_PREFIX), global_step=step,
                       write_meta_graph=False, write_state=False)

        def commit(new_state):
            """The save sequence's commit point: state.json, then index files, log and clean-up follow it."""
            fault_point("before_state")
            checkpoints.write_json(state_path, new_state)
            fault_point("after_state")
            checkpoints.tidy(folder, new_state)
            write_log(folder, new_state["log"])

        session.run([tf.global_variables_initializer(), tf.local_variables_initializer()])
        if state:
            last_saver.restore(session, os.path.join(folder, "last", f"{checkpoints.CHECKPOINT_PREFIX}-{state['step']}"))
            state.setdefault("log", [])
        else:
            state = {"epoch": 0, "step": None, "best_accuracy": 0.0, "best_epoch": 0, "best_step": None,
                     "finished": False, "log": []}
            if args.init_from:
                init_weights(session, net, args.init_from, config)
        step = int(session.run(global_step))
        if state["step"] is not None:
            print(f"resuming from {folder}/last at step {step} (epoch {step // steps_per_epoch + 1})")
        writer = tf.summary.FileWriter(folder, session.graph if state["step"] is None else None)
        stopped_early, bar, swapped = False, None, False
        try:
            while step < total_steps and not (args.max_steps and step >= args.max_steps):
                epoch = step // steps_per_epoch
                if epoch - state["best_epoch"] >= args.patience and state["best_epoch"] > 0:
                    print(f"early stop: no better PublicTest accuracy for {args.patience} epochs")
                    stopped_early = True
                    break
                # Each epoch's order depends only on (seed, epoch): a resumed epoch sees the same batches.
                order = np.random.RandomState(args.seed + epoch).permutation(len(train_labels))
                losses, hits, seen = [], 0, 0
                start = time.perf_counter()
                bar = tqdm(range(step % steps_per_epoch, steps_per_epoch), desc=f"epoch {epoch + 1}/{args.epochs}",
                           unit="step", leave=True, dynamic_ncols=True)
                for i in bar:
                    batch = order[i * args.batch_size:(i + 1) * args.batch_size]
                    x, t = train_x[batch], None if train_targets is None else train_targets[batch]
                    if args.mixup:
                        # Seeded by (seed, epoch, step in epoch): a resumed epoch mixes the same pairs.
                        x, t = mixup(x, one_hot(train_labels[batch]) if t is None else t, args.mixup,
                                     np.random.RandomState([args.seed, epoch, i]))
                    feed = {net.images: x, net.labels: train_labels[batch], net.is_training: True, net.augment: True}
                    if t is not None:
                        feed[targets] = t
                    fetches = [train_op, cross_entropy, correct]
                    if step % 50 == 0:
                        fetches.append(summaries)
                    out = session.run(fetches, feed)
                    if not np.isfinite(out[1]):
                        kept = (f"the last saved state (step {state['step']}) is kept" if state["step"] is not None
                                else "nothing was saved")
                        raise cli.UserError(f"loss became {out[1]} at step {step} (epoch {epoch + 1}); {kept}; "
                                            f"the learning rate {args.lr:g} is probably too high: try --lr {args.lr / 10:g}")
                    step += 1
                    if len(out) == 4:
                        writer.add_summary(out[3], step)
                    losses.append(out[1])
                    hits += out[2]
                    seen += len(batch)
                    if i % 10 == 0 or i == steps_per_epoch - 1:
                        bar.set_postfix(loss=f"{np.mean(losses):.3f}", acc=f"{hits / seen:.3f}",
                                        img_s=f"{seen / (time.perf_counter() - start):.0f}")
                    if args.max_steps and step >= args.max_steps:
                        break
                bar.close()
                if step % steps_per_epoch:
                    break  # --max-steps stopped mid-epoch
                seconds = time.perf_counter() - start
                val_loss, val_acc = evaluate(session, net, cross_entropy, val_x, val_labels)
                epoch += 1
                row = dict(zip(LOG_FIELDS, (
                    epoch, step, f"{session.run(lr):.6g}", f"{np.mean(losses):.4f}", f"{hits / seen:.4f}",
                    f"{val_loss:.4f}", f"{val_acc:.4f}", f"{seconds:.1f}", f"{seen / seconds:.0f}")))
                new_state = dict(state, epoch=epoch, step=step, log=state["log"] + [row])
                improved = val_acc > state["best_accuracy"]
                if improved:
                    save("best", best_saver, step)
                    new_state.update(best_accuracy=val_acc, best_epoch=epoch, best_step=step)
                    fault_point("after_best")
                if averaged:
                    # The average is scored with its weights swapped into the model, and saved as best/
                    # from there when it is the best candidate; the raw weights are swapped back after.
                    session.run(averaged.backup)
                    swapped = True
                    session.run(averaged.load_average)
                    ema_acc = evaluate(session, net, cross_entropy, val_x, val_labels)[1]
                    row["ema_val_accuracy"] = f"{ema_acc:.4f}"
                    if ema_acc > max(val_acc, state["best_accuracy"]):
                        save("best", best_saver, step)
                        new_state.update(best_accuracy=ema_acc, best_epoch=epoch, best_step=step, best_is_average=True)
                        improved = True
                    elif improved:
                        new_state.pop("best_is_average", None)
                    session.run(averaged.restore)
                    swapped = False
                save("last", last_saver, step)
                fault_point("after_last")
                commit(new_state)
                state = new_state
                writer.add_summary(tf.Summary(value=[tf.Summary.Value(tag="val_accuracy", simple_value=val_acc),
                                                     tf.Summary.Value(tag="val_loss", simple_value=val_loss)]), step)
                writer.flush()
                print(f"epoch {epoch}: train loss {np.mean(losses):.4f} acc {hits / seen:.4f} | "
                      f"PublicTest loss {val_loss:.4f} acc {val_acc:.4f}"
                      f"{' average ' + row['ema_val_accuracy'] if averaged else ''}{' (best)' if improved else ''} | "
                      f"{seconds:.0f} s, {seen / seconds:.0f} img/s")
        except KeyboardInterrupt:
            if bar is not None:
                bar.close()
            if swapped:  # interrupted while the average was in the model: the raw weights go back first
                session.run(averaged.restore)
            step = int(session.run(global_step))  # Ctrl-C may land after a step ran but before we counted it
            save("last", last_saver, step)
            commit(dict(state, step=step))
            print(f"\ninterrupted: saved step {step} to {folder}/last; run the same command to resume")
            return 130
        finally:
            writer.close()
        if step != state["step"]:  # --max-steps stopped mid-epoch
            save("last", last_saver, step)
            state = dict(state, step=step)
        state["finished"] = stopped_early or step >= total_steps
        commit(state)
    if state["best_step"] is None:
        print(f"stopped at step {step}, before the first epoch ended: no best weights yet; run the same command to go on")
        return 0
    plot_curves(os.path.join(folder, "log.csv"), os.path.join(folder, "curves.png"))
    done = "stopped early" if stopped_early else ("finished" if step >= total_steps else f"stopped at step {step}")
    print(f"{done}: best PublicTest accuracy {state['best_accuracy']:.4f} at epoch {state['best_epoch']}; "
          f"weights in {folder}/best, curves in {folder}/curves.png")


if __name__ == "__main__":
    cli.run(main)
