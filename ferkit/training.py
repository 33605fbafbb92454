"""Training, as a library: the loop, its schedule, EMA, targets and PublicTest scoring, saving into a run folder.

    from ferkit import training
    result = training.train("acnn_alstm", data="data/fer2013.npz", epochs=45, patience=45)
    result.folder, result.best_accuracy, result.best_epoch, result.ended      # os.fspath(result) is the folder

`ferkit train` and train.py parse their options into these arguments; every setting's default and range
is that of ferkit.settings.TrainSettings, and config.json records them with the architecture and its
hyperparameters.  After each epoch the model is scored on PublicTest; the best weights go to
<folder>/best, everything needed to resume to <folder>/last.  PrivateTest is never read.  Ctrl-C (or
SIGTERM, with stop_on_signals) saves and stops; the same call again resumes where it stopped, also
after the process was killed: state.json is written last, and whatever it does not name is removed on
the next start.  A folder holding a finished model is never trained into unless overwrite=True.
"""
import contextlib
import math
import os
import signal
import time
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np

from ferkit import backends, cli, files, models, runfolder, settings
from ferkit.errors import FerkitError

CHECKPOINTS = "checkpoints"  # where a run saves by default: checkpoints/<arch>/, in the current folder


class Diverged(FerkitError):
    """The loss became NaN or infinite; the last committed epoch is kept."""


@dataclass
class TrainResult:
    """What train() returns: the run folder (os.fspath(result) too) and how the run ended: "finished",
    "stopped early" (patience), "stopped at step N" (max_steps) or "interrupted" (Ctrl-C, SIGTERM)."""
    folder: str
    ended: str
    best_accuracy: float
    best_epoch: int
    step: int
    state: dict

    def __fspath__(self):
        return self.folder


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


def check_init_from(source, config):
    """--init-from, before TensorFlow loads or anything is written: a finished folder of the same
    model and hyperparameters, with best/ weights."""
    from ferkit import checkpoints
    old = checkpoints.read_config(source)
    if (old["model"], old["hparams"]) != (config["model"], config["hparams"]):
        raise cli.UserError(f"--init-from {source}: holds {old['model']} {old['hparams']}, "
                            f"not {config['model']} {config['hparams']}; fine-tune the same model")
    if checkpoints.latest(source, "best") is None:
        raise cli.UserError(f"--init-from {source}: no weights in best/")


def init_weights(session, net, source):
    """Restore the model variables from source's best/ weights (fine-tuning); the optimizer starts fresh."""
    from ferkit import checkpoints
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


def ferplus_data(path, train_images, train_labels, val_images, fer2013_weight=0.0, trained_on=("Training",)):
    """--labels ferplus: Training faces with their FER+ vote shares over the 7 emotions (faces with no
    emotion votes left out), PublicTest faces with a clear FER+ majority and that label.
    fer2013_weight W (--labels both): the targets are (1 - W) x the vote shares + W x the one-hot of
    the face's FER-2013 label, so that both label sets teach the model.
    trained_on: the splits train_images are made of, in order (TrainSettings.trained_on), so their votes are too.
    -> train images, train labels (the top target, for the accuracy shown), train targets float32 (N, 7),
    PublicTest images, PublicTest labels."""
    from ferkit import data, ferplus
    votes = np.concatenate([data.load_ferplus_votes(path, split) for split in trained_on])
    targets, has_votes = ferplus.vote_targets(votes, train_labels, fer2013_weight)
    val_labels, clear = ferplus.majority(data.load_ferplus_votes(path, "PublicTest"))
    print(f"FER+ labels: {has_votes.sum()} of {len(votes)} {' + '.join(trained_on)} faces with emotion votes; "
          f"{clear.sum()} of {len(clear)} PublicTest faces with a clear majority")
    return (train_images[has_votes], targets.argmax(1).astype(np.int64), targets,
            val_images[clear], val_labels[clear])


def teacher_targets(path, weight, train_images, train_labels):
    """--teacher: targets float32 (N, 7) = weight x the teachers' probabilities + (1 - weight) x one-hot labels."""
    from ferkit import data
    from ferkit.dataset import NUM_CLASSES
    from ferkit.faces import one_hot
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


def cutmix(images, targets, alpha, rng):
    """CutMix (Yun et al. 2019): onto each face of images float32 (B, 48, 48, 1), a box cut from the same
    place of another face of the batch; targets (B, 7) mixed by the box's share of the area.  The share
    is min(u, 1 - u), u ~ Beta(alpha, alpha), at most half: each row's int label still names the
    dominant face.  -> (images, targets float32), the same shapes."""
    source, soft = images, targets.astype(np.float32)  # boxes come from the faces as they were
    images, targets = source.copy(), soft.copy()
    other = rng.permutation(len(images))
    share = rng.beta(alpha, alpha, size=len(images))
    share = np.minimum(share, 1.0 - share)
    size = images.shape[1]
    for i, j in enumerate(other):
        side = min(int(round(size * np.sqrt(share[i]))), int(size / np.sqrt(2)))  # never more than half the face
        if side == 0:
            continue
        top, left = rng.integers(0, size - side + 1, size=2)
        images[i, top:top + side, left:left + side] = source[j, top:top + side, left:left + side]
        pasted = side * side / (size * size)  # the area actually pasted, after rounding
        targets[i] = (1.0 - pasted) * soft[i] + pasted * soft[j]
    return images, targets


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


def plot_curves(rows, out_path):
    """log.csv's rows (dicts, as in state.json's log) -> the loss and accuracy curves as a PNG."""
    from ferkit.files import new_figure, save_figure
    if not rows:
        return
    epoch = [int(r["epoch"]) for r in rows]
    fig, (ax1, ax2) = new_figure(ncols=2, figsize=(10, 4))
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
    save_figure(fig, out_path)


def load_sets(s):
    """Training and PublicTest (never PrivateTest) -> namespace of train_x float32 (N, 48, 48, 1),
    train_labels int (N,), train_targets float32 (N, 7) or None (soft targets: FER+ votes, a
    teacher), val_x, val_labels, fingerprint (of the faces trained on and their FER-2013 labels)."""
    from ferkit import data
    from ferkit.faces import to_model_input
    loaded = data.load(s.data, seed=s.seed, splits=("Training", "PublicTest"), label_map=s.label_map, faces=s.faces)
    for note in loaded.notes:
        print(f"note: {note}")
    if len(loaded.splits.get("PublicTest", ((), ()))[1]) == 0:
        raise cli.UserError(f"{s.data}: no PublicTest faces to choose checkpoints on; give a data set with a "
                            "PublicTest split (or more Training rows, of which preprocess carves one)")
    val_images, val_labels = loaded.splits["PublicTest"]
    # With --refit PublicTest joins the training set; it is still scored, but chooses nothing
    train_images, train_labels = (np.concatenate(arrays) for arrays in zip(*(loaded.splits[k] for k in s.trained_on())))
    # What a resume must find again: the faces trained on and their FER-2013 labels (not targets
    # derived from settings, which the settings themselves pin down).
    fingerprint = data.fingerprint(train_images, train_labels)
    train_targets = None
    if s.labels in ("ferplus", "both"):
        train_images, train_labels, train_targets, val_images, val_labels = ferplus_data(
            s.data, train_images, train_labels, val_images, s.fer2013_weight if s.labels == "both" else 0.0,
            s.trained_on())
    if s.teacher:
        train_targets = teacher_targets(s.teacher, s.distill, train_images, train_labels)
    return SimpleNamespace(train_x=to_model_input(train_images), train_labels=train_labels, train_targets=train_targets,
                           val_x=to_model_input(val_images), val_labels=val_labels, fingerprint=fingerprint,
                           notes=loaded.notes)


def make_config(arch, hparams, run_settings, data_notes=()):
    """What config.json records: the architecture, its hyperparameters and the run's settings, and
    what reading the data said (a validation split carved out of a collection, images skipped)."""
    config = {"model": arch, "hparams": hparams, "settings": run_settings.to_json()}
    return {**config, "data_notes": list(data_notes)} if data_notes else config


class TrainingGraph:
    """One run's training graph: the model with augmentation, its loss, the schedule, the optimizer
    (and --ema's average), and the savers of best/ and last/ in the run folder."""

    def __init__(self, s, config, run, steps_per_epoch):
        import tensorflow.compat.v1 as tf

        from ferkit import checkpoints
        from ferkit.dataset import NUM_CLASSES
        self.s, self.run = s, run
        self.net = net = checkpoints.build(config, augmentation=True)
        # Soft targets (N, 7) when fed (FER+ vote shares); otherwise the one-hot of the int labels, as always.
        self.targets = tf.placeholder_with_default(tf.one_hot(net.labels, NUM_CLASSES), [None, NUM_CLASSES], name="targets")
        total_loss, self.cross_entropy = models.loss(net.logits, label_smoothing=s.label_smoothing, targets=self.targets)
        self.global_step = tf.train.get_or_create_global_step()
        self.lr = learning_rate(self.global_step, s.lr, int(s.warmup_epochs * steps_per_epoch), s.epochs * steps_per_epoch)
        optimizer = (tf.train.MomentumOptimizer(self.lr, s.momentum, use_nesterov=True) if s.optimizer == "sgd"
                     else tf.train.AdamOptimizer(self.lr))
        self.train_op = optimizer.minimize(total_loss, global_step=self.global_step)
        self.averaged = weight_average(net.model_variables, self.train_op, self.global_step, s.ema) if s.ema else None
        if self.averaged:
            self.train_op = self.averaged.train_op
        self.correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(net.logits, 1, output_type=tf.int32), net.labels), tf.int32))
        self.summaries = tf.summary.merge([tf.summary.scalar("loss", self.cross_entropy),
                                           tf.summary.scalar("learning_rate", self.lr)])
        # max_to_keep=None: TensorFlow deletes nothing; run.commit keeps exactly the checkpoints state.json names.
        self.savers = {"best": tf.train.Saver(net.model_variables, max_to_keep=None),
                       "last": tf.train.Saver(max_to_keep=None)}
        self.parameters = sum(int(np.prod(v.shape)) for v in tf.trainable_variables())

    def save(self, session, which, step):
        from ferkit import checkpoints
        # write_state=False: the index file moves to the new checkpoint only after state.json commits it.
        self.savers[which].save(session, os.path.join(self.run.path, which, checkpoints.CHECKPOINT_PREFIX),
                                global_step=step, write_meta_graph=False, write_state=False)

    def start(self, session, steps_per_epoch, sets):
        """Initialise or restore -> the state to go on from (a fine-tuning run's first scores its start on sets.val_*)."""
        import tensorflow.compat.v1 as tf

        from ferkit import checkpoints
        session.run([tf.global_variables_initializer(), tf.local_variables_initializer()])
        state = self.run.state
        if state:
            prefix = os.path.join(self.run.path, "last", f"{checkpoints.CHECKPOINT_PREFIX}-{state['step']}")
            for name in checkpoints.checkpoint_files(self.run.path, "last", state["step"]):
                cli.require_regular(os.path.join(self.run.path, "last", name), "checkpoint file")
            try:
                self.savers["last"].restore(session, prefix)
            except (tf.errors.OpError, ValueError) as e:  # a truncated data file, a garbage index
                raise cli.UserError(f"{prefix}: the checkpoint to resume from is damaged ({str(e).splitlines()[0][:100]}); "
                                    "nothing was changed. Move the folder away, or --overwrite to train it afresh") from None
            print(f"resuming from {self.run.folder}/last at step {state['step']} "
                  f"(epoch {state['step'] // steps_per_epoch + 1})")
            return dict(state, log=state.get("log", []))
        fresh = {"epoch": 0, "step": None, "best_accuracy": 0.0, "best_epoch": 0, "best_step": None,
                 "finished": False, "log": []}
        if self.s.init_from:  # fine-tuning: what the starting model scores, to compare the end with
            init_weights(session, self.net, self.s.init_from)
            fresh["start_accuracy"] = evaluate(session, self.net, self.cross_entropy, sets.val_x, sets.val_labels)[1]
            print(f"{self.s.init_from} before fine-tuning: PublicTest accuracy {fresh['start_accuracy']:.4f}")
        return fresh

    def average_accuracy(self, session, images, labels):
        """--ema: PublicTest accuracy of the averaged weights, swapped into the model meanwhile (the raw
        weights are swapped back, also on Ctrl-C).  Called with the average loaded, then `save` writes it."""
        session.run(self.averaged.backup)
        session.run(self.averaged.load_average)
        return evaluate(session, self.net, self.cross_entropy, images, labels)[1]

    def feed(self, sets, batch, epoch, i, step):
        """The feed of step `step` (step i of the epoch) on Training rows `batch`: augmentation, dropout and
        mixup are seeded by (seed, epoch, step), so that a resumed epoch repeats them."""
        from ferkit.faces import one_hot
        s, net = self.s, self.net
        x, t = sets.train_x[batch], None if sets.train_targets is None else sets.train_targets[batch]
        if s.mixup or s.cutmix:
            mix, alpha = (mixup, s.mixup) if s.mixup else (cutmix, s.cutmix)
            x, t = mix(x, one_hot(sets.train_labels[batch]) if t is None else t, alpha,
                       np.random.default_rng([s.seed, epoch, i]) if s.cutmix else np.random.RandomState([s.seed, epoch, i]))
        feed = {net.images: x, net.labels: sets.train_labels[batch], net.is_training: True, net.augment: True,
                net.step_seed: [s.seed, step]}
        if t is not None:
            feed[self.targets] = t
        return feed


class Trainer:
    """The loop over epochs of one run, saving into a RunFolder through a TrainingGraph.

    Each epoch's batch order, each step's augmentation and dropout masks (stateless, fed
    net.step_seed) and mixup pairs depend only on (seed, epoch, step), so a resumed run repeats
    an uninterrupted one exactly.  After each epoch: PublicTest scores, best/ if
    better, last/, then run.commit.  An epoch whose training ended but whose scoring was
    interrupted is scored on resume; its training loss and accuracy are kept in the state.
    """

    def __init__(self, graph, s, max_steps, sets, run, steps_per_epoch):
        self.graph, self.s, self.max_steps, self.sets, self.run = graph, s, max_steps, sets, run
        self.steps_per_epoch, self.total_steps = steps_per_epoch, s.epochs * steps_per_epoch

    def train_epoch(self, session, writer, step, partial):
        """Steps from `step` to the epoch's end (or --max-steps) -> (step, stats); stats (loss_sum,
        hits, seen, seconds) go on from `partial`, what an interrupted run had done of this epoch."""
        from tqdm import tqdm
        s, g, spe = self.s, self.graph, self.steps_per_epoch
        epoch = step // spe
        stats = self.partial = dict(partial or {"loss_sum": 0.0, "hits": 0, "seen": 0, "seconds": 0.0})
        order = np.random.RandomState(s.seed + epoch).permutation(len(self.sets.train_labels))
        start, done = time.perf_counter(), stats["seconds"]
        bar = tqdm(range(step % spe, spe), desc=f"epoch {epoch + 1}/{s.epochs}", unit="step", dynamic_ncols=True)
        try:
            for i in bar:
                batch = order[i * s.batch_size:(i + 1) * s.batch_size]
                fetches = [g.train_op, g.cross_entropy, g.correct] + ([g.summaries] if step % 50 == 0 else [])
                with signals_after_the_step():  # a step applied is a step counted: the resumed log is the same
                    out = session.run(fetches, g.feed(self.sets, batch, epoch, i, step))
                    if not np.isfinite(out[1]):
                        raise Diverged(f"loss became {out[1]} at step {step} (epoch {epoch + 1}); the last saved "
                                       f"state is kept; the learning rate {s.lr:g} is probably too high: try --lr "
                                       f"{s.lr / 10:g}")
                    step += 1
                    stats.update(loss_sum=stats["loss_sum"] + float(out[1]) * len(batch),
                                 hits=stats["hits"] + int(out[2]), seen=stats["seen"] + len(batch),
                                 seconds=done + time.perf_counter() - start)
                if len(out) == 4:
                    writer.add_summary(out[3], step)
                if i % 10 == 0 or i == spe - 1:
                    bar.set_postfix(loss=f"{stats['loss_sum'] / stats['seen']:.3f}", acc=f"{stats['hits'] / stats['seen']:.3f}",
                                    img_s=f"{stats['seen'] / stats['seconds']:.0f}")
                if self.max_steps and step >= self.max_steps:
                    break
        finally:
            bar.close()
        return step, stats

    def score(self, session, state, step, stats):
        """PublicTest after an epoch: best/ if better (raw weights, or their average with --ema), last/,
        then the commit -> (PublicTest accuracy, loss, the epoch's line)."""
        g, sets = self.graph, self.sets
        files.fault_point("scoring")
        val_loss, val_acc = evaluate(session, g.net, g.cross_entropy, sets.val_x, sets.val_labels)
        epoch = step // self.steps_per_epoch
        loss, accuracy, seconds = stats["loss_sum"] / stats["seen"], stats["hits"] / stats["seen"], stats["seconds"]
        row = dict(zip(runfolder.LOG_FIELDS, (epoch, step, f"{session.run(g.lr):.6g}", f"{loss:.4f}", f"{accuracy:.4f}",
                                              f"{val_loss:.4f}", f"{val_acc:.4f}", f"{seconds:.1f}",
                                              f"{stats['seen'] / seconds:.0f}")))
        new_state = dict(state, epoch=epoch, step=step, log=state["log"] + [row])
        new_state.pop("partial", None)
        improved = val_acc > state["best_accuracy"] or self.s.refit  # --refit: the schedule chooses, not PublicTest
        if improved:
            g.save(session, "best", step)
            new_state.update(best_accuracy=val_acc, best_epoch=epoch, best_step=step)
            new_state.pop("best_is_average", None)
            files.fault_point("after_best")
        if g.averaged:
            try:
                ema_acc = g.average_accuracy(session, sets.val_x, sets.val_labels)
                row["ema_val_accuracy"] = f"{ema_acc:.4f}"
                if ema_acc > max(val_acc, state["best_accuracy"]):
                    g.save(session, "best", step)
                    new_state.update(best_accuracy=ema_acc, best_epoch=epoch, best_step=step, best_is_average=True)
                    improved = True
            finally:
                session.run(g.averaged.restore)
        g.save(session, "last", step)
        files.fault_point("after_last")
        self.run.commit(new_state)
        self.state, self.partial = new_state, None
        line = (f"epoch {epoch}: train loss {loss:.4f} acc {accuracy:.4f} | PublicTest loss {val_loss:.4f} acc {val_acc:.4f}"
                f"{' average ' + row['ema_val_accuracy'] if g.averaged else ''}{' (best)' if improved else ''} | "
                f"{seconds:.0f} s, {stats['seen'] / seconds:.0f} img/s")
        return val_acc, val_loss, line

    def why_stop(self, step):
        """How the run ends before another epoch, or None to train one."""
        s, state = self.s, self.state
        if step >= self.total_steps:
            return "finished"
        if self.max_steps and step >= self.max_steps:
            return f"stopped at step {step}"
        if not s.refit and state["best_epoch"] > 0 and step // self.steps_per_epoch - state["best_epoch"] >= s.patience:
            print(f"early stop: no better PublicTest accuracy for {s.patience} epochs")
            return "stopped early"
        return None

    def loop(self, session, on_epoch=None):
        """Epochs until the schedule ends, patience runs out or --max-steps -> (state, how it ended).
        on_epoch(state), if given, is called after each epoch's commit (a sweep reports it)."""
        import tensorflow.compat.v1 as tf
        g, spe = self.graph, self.steps_per_epoch
        self.state = g.start(session, spe, self.sets)
        self.partial = self.state.get("partial")  # what a stopped run had done of its epoch (loss, hits, time)
        step = int(session.run(g.global_step))
        writer = tf.summary.FileWriter(self.run.path, session.graph if self.state["step"] is None else None)
        ended = None
        try:
            while ended is None:
                if step and step % spe == 0 and self.state["epoch"] < step // spe:  # trained, then interrupted: score it
                    val_acc, val_loss, line = self.score(session, self.state, step, self.partial)
                    writer.add_summary(tf.Summary(value=[tf.Summary.Value(tag="val_accuracy", simple_value=val_acc),
                                                         tf.Summary.Value(tag="val_loss", simple_value=val_loss)]), step)
                    writer.flush()
                    print(line)
                    if on_epoch:
                        on_epoch(self.state)
                ended = self.why_stop(step)
                if ended is None:
                    step, self.partial = self.train_epoch(session, writer, step, self.partial)
        except KeyboardInterrupt:
            step = int(session.run(g.global_step))  # Ctrl-C may land after a step ran but before we counted it
            g.save(session, "last", step)
            state = dict(self.state, step=step, partial=self.partial)
            self.run.commit(state)
            print(f"\ninterrupted: saved step {step} to {self.run.folder}/last; run the same command to resume")
            return state, "interrupted"
        finally:
            writer.close()
        return self.finish(session, step, ended), ended

    def finish(self, session, step, ended):
        """The run's last commit -> its final state: last/ at a --max-steps stop, the curves, finished."""
        state = self.state
        if step != state["step"]:  # --max-steps stopped mid-epoch
            self.graph.save(session, "last", step)
            state = dict(state, step=step, partial=self.partial)
        state["finished"] = ended != f"stopped at step {step}"
        if state["best_step"] is not None:  # drawn before the final commit: a kill after it leaves the curves too
            plot_curves(state["log"], os.path.join(self.run.path, "curves.png"))
        self.run.commit(state)
        return state


_SIGNALS = {"deferred": False, "pending": False}


@contextlib.contextmanager
def signals_after_the_step():
    """Ctrl-C or SIGTERM during the block takes effect when it ends: a training step that TensorFlow
    applied (global_step moved) is then counted in the epoch's loss and accuracy too, so a resumed
    run logs what an uninterrupted one logs.  An error inside the block goes on as it is."""
    _SIGNALS["deferred"] = True
    try:
        yield
    finally:
        _SIGNALS["deferred"] = False
    if _SIGNALS["pending"]:
        _SIGNALS["pending"] = False
        raise KeyboardInterrupt


def stop_on_signals():
    """Ctrl-C (SIGINT) and SIGTERM (kill PID, a cluster's scheduler, a container stopping) save and
    stop.  SIGINT's handler is set again because a process started in the background (&, or by a
    parent that ignores it, as test runners' workers do) inherits SIGINT ignored."""
    def interrupt(signum, frame):
        if _SIGNALS["deferred"]:
            _SIGNALS["pending"] = True
        else:
            raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, interrupt)


def train(arch, out=None, hparams=None, max_steps=None, overwrite=False, on_epoch=None, **options):
    """Train model `arch` (a name of ferkit.models.MODELS) -> TrainResult.

    out: the run folder (default checkpoints/<arch>, in the current folder); resumed if it holds this run.
    hparams: {name: value} or ["NAME=VALUE", ...] over the model's defaults.  max_steps: stop after this
    many steps in all.  options: TrainSettings fields (data, epochs, batch_size, lr, seed, labels, ...), or
    settings=TrainSettings(...).  on_epoch(state) is called after each epoch's commit.  Raises FerkitError
    (cli.UserError, Diverged, data.DataError) for what the caller can fix; nothing is written before the
    settings, hyperparameters and data have been checked."""
    s = options.pop("settings", None) or settings.TrainSettings(**options)
    if s.problems():
        raise cli.UserError(s.problems()[0])
    if s.init_from and not os.path.exists(s.init_from) and os.sep not in s.init_from:  # a shipped model's name
        s.init_from = backends.resolve(model=s.init_from, fast=False)
    if s.init_from:
        checkpoints_module().read_config(s.init_from)  # a wrong folder fails at once, before TensorFlow loads
    tf = cli.quiet_tensorflow()  # before the model's module imports it: without its start-up chatter
    if isinstance(hparams, dict):
        hparams = [f"{k}={v}" for k, v in hparams.items()]
    hparams = model_hparams(arch, hparams or [])  # checked before any data is read
    if s.init_from:
        check_init_from(s.init_from, {"model": arch, "hparams": hparams})
    sets = load_sets(s)
    s.data_size, s.data_fingerprint = len(sets.train_labels), sets.fingerprint
    steps_per_epoch = s.data_size // s.batch_size  # drop the last partial batch: stable batch norm
    if steps_per_epoch == 0:
        raise cli.UserError(f"{s.data}: {s.data_size} Training faces, fewer than one batch of {s.batch_size}; "
                            f"give a smaller --batch-size (at most {max(1, s.data_size // 4)} makes 4 steps an epoch)")
    config = make_config(arch, hparams, s, sets.notes)
    run = runfolder.RunFolder(out or os.path.join(CHECKPOINTS, arch), config, overwrite, s.changed_from)
    try:
        print(f"model {arch} {config['hparams']}")
        print(f"settings {config['settings']}")
        print(f"Training {s.data_size} faces, PublicTest {len(sets.val_labels)}; {steps_per_epoch} "
              f"steps/epoch; saving to {run.folder}" + (" (replacing its model once this one has best weights)"
                                                         if run.replacing else ""))
        tf.set_random_seed(s.seed)
        graph = TrainingGraph(s, config, run, steps_per_epoch)
        print(f"{graph.parameters:,} parameters")
        trainer = Trainer(graph, s, max_steps, sets, run, steps_per_epoch)
        # A full disk anywhere in training (checkpoints, the TensorBoard log, state.json) is one line;
        # what was committed before stays, and the same command resumes from it once there is room.
        with tf.Session(config=checkpoints_module().session_config(s.bf16)) as session, files.no_space_is_one_line(
                run.folder, "what the last finished epoch committed is kept, and the same command resumes from it"):
            state, ended = trainer.loop(session, on_epoch)
        replacing = run.replacing  # until close(), which settles the folder
    finally:
        run.close()
    if ended != "interrupted":  # the loop said where it saved
        print(outcome_line(run.folder, replacing, state, ended, max_steps))
    return TrainResult(run.folder, ended, state["best_accuracy"], state["best_epoch"], state["step"], state)


def outcome_line(folder, replacing, state, ended, max_steps):
    """What a finished or stopped run says last."""
    if state["best_step"] is None:
        kept = " (the folder's old model is kept as it was)" if replacing else ""
        go_on = "run again with a larger --max-steps, or without it," if max_steps else "run the same command"
        return (f"stopped at step {state['step']}, before the first epoch ended: no best weights yet{kept}; "
                f"{go_on} to go on" + (", which starts this run again" if replacing else ""))
    go_on = "; a larger --max-steps (or none) goes on" if ended.startswith("stopped at step") else ""
    before = (f" (the starting model's {state['start_accuracy']:.4f} before fine-tuning)"
              if "start_accuracy" in state else "")
    return (f"{ended}: best PublicTest accuracy {state['best_accuracy']:.4f} at epoch {state['best_epoch']}{before}; "
            f"weights in {folder}/best, curves in {folder}/curves.png{go_on}")


def checkpoints_module():
    from ferkit import checkpoints  # TensorFlow-side: imported when a run starts, not with this module
    return checkpoints
