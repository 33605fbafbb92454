"""Train a model on FER-2013's Training split, choosing checkpoints on PublicTest.

    python train.py --model acnn_alstm [--data PATH] [--epochs N] [--batch-size N]
                    [--lr X] [--checkpoint-dir checkpoints/<model>] [--seed N]

--data takes the cache preprocess.py writes or any layout it reads.  After
each epoch the model is scored on PublicTest; the best weights go to
<dir>/best, everything needed to resume to <dir>/last.  PrivateTest is never
read.  Ctrl-C saves and stops; the same command again resumes where it stopped.
"""
import argparse
import csv
import math
import os
import time

import numpy as np
from tqdm import tqdm

import models
from fer import checkpoints, cli, data
from fer.faces import to_model_input

tf = cli.quiet_tensorflow()

# Settings that shape the schedule: resuming with other values would not
# continue the same run, so a folder refuses them.
SCHEDULE_KEYS = ("epochs", "batch_size", "lr", "warmup_epochs", "label_smoothing", "seed", "data_size")
LOG_FIELDS = ("epoch", "step", "lr", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "seconds", "images_per_s")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, choices=sorted(models.MODELS), help="which model to train")
    parser.add_argument("--data", default="data/fer2013.npz", help="preprocess cache or any FER-2013 download (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=30, help="epochs of the cosine schedule (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=64, help="(default: %(default)s)")
    parser.add_argument("--lr", type=float, default=1e-3, help="peak Adam learning rate (default: %(default)s)")
    parser.add_argument("--warmup-epochs", type=float, default=1.0, help="linear warm-up before the cosine decay (default: %(default)s)")
    parser.add_argument("--label-smoothing", type=float, default=0.1, help="(default: %(default)s)")
    parser.add_argument("--patience", type=int, default=10, help="stop after this many epochs without a better PublicTest accuracy (default: %(default)s)")
    parser.add_argument("--checkpoint-dir", help="where to save (default: checkpoints/<model>)")
    parser.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="override a model hyperparameter, e.g. --set dropout=0.4 (repeatable)")
    parser.add_argument("--max-steps", type=int, help="stop after this many steps in all (for smoke tests)")
    return parser.parse_args()


def model_hparams(name, overrides):
    """Defaults of model `name`, with NAME=VALUE overrides converted to the default's type."""
    hparams = models.default_hparams(name)
    for item in overrides:
        key, _, value = item.partition("=")
        if key not in hparams:
            raise cli.UserError(f"--set {item}: {name} has no hyperparameter {key!r}; it has {', '.join(hparams)}")
        try:
            hparams[key] = type(hparams[key])(value)
        except ValueError:
            raise cli.UserError(f"--set {item}: {value!r} is not a {type(hparams[key]).__name__}") from None
    return hparams


def prepare_folder(folder, config):
    """Create or reuse the checkpoint folder; refuse one made for another model or schedule."""
    path = os.path.join(folder, checkpoints.CONFIG)
    if os.path.exists(path):
        old = checkpoints.read_config(folder)
        if old["model"] != config["model"]:
            raise cli.UserError(f"{folder} holds a {old['model']} checkpoint, not {config['model']}; "
                                "pass another --checkpoint-dir (nothing was overwritten)")
        if checkpoints.latest(folder, "last"):
            changed = [k for k in SCHEDULE_KEYS if old["settings"].get(k) != config["settings"].get(k)]
            changed += [k for k in config["hparams"] if old["hparams"].get(k) != config["hparams"][k]]
            if changed:
                raise cli.UserError(f"{folder} was trained with other settings ({', '.join(changed)}: "
                                    f"{', '.join(str(old['settings'].get(k, old['hparams'].get(k))) for k in changed)}); "
                                    "rerun with the same ones to resume, or pass another --checkpoint-dir")
    os.makedirs(folder, exist_ok=True)
    checkpoints.write_json(path, config)


def learning_rate(step, peak, warmup_steps, total_steps):
    """Linear warm-up to `peak`, then cosine decay to zero at total_steps (a function of the global step)."""
    step = tf.cast(step, tf.float32)
    warm = peak * (step + 1.0) / max(warmup_steps, 1)
    progress = tf.minimum((step - warmup_steps) / max(total_steps - warmup_steps, 1), 1.0)
    cosine = 0.5 * peak * (1.0 + tf.cos(math.pi * progress))
    return tf.where(step < warmup_steps, warm, cosine)


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
    folder = args.checkpoint_dir or checkpoints.resolve(model=args.model)
    loaded = data.load(args.data, seed=args.seed, splits=("Training", "PublicTest"))  # never PrivateTest
    for note in loaded.notes:
        print(f"note: {note}")
    if "PublicTest" not in loaded.splits:
        raise cli.UserError(f"{args.data}: no PublicTest split to choose checkpoints on")
    train_images, train_labels = loaded.splits["Training"]
    val_images, val_labels = loaded.splits["PublicTest"]
    train_x, val_x = to_model_input(train_images), to_model_input(val_images)

    steps_per_epoch = len(train_labels) // args.batch_size  # drop the last partial batch: stable batch norm
    if steps_per_epoch == 0:
        raise cli.UserError(f"{args.data}: {len(train_labels)} Training faces, fewer than one batch of {args.batch_size}")
    total_steps = args.epochs * steps_per_epoch
    settings = {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "warmup_epochs": args.warmup_epochs,
                "label_smoothing": args.label_smoothing, "patience": args.patience, "seed": args.seed,
                "data": args.data, "data_size": len(train_labels), "optimizer": "adam"}
    config = {"model": args.model, "hparams": model_hparams(args.model, args.set), "settings": settings}
    prepare_folder(folder, config)
    print(f"model {args.model} {config['hparams']}")
    print(f"settings {settings}")
    print(f"Training {len(train_labels)} faces, PublicTest {len(val_labels)}; {steps_per_epoch} steps/epoch; saving to {folder}")

    tf.set_random_seed(args.seed)
    net = checkpoints.build(config, augmentation=True)
    total_loss, cross_entropy = models.loss(net.logits, net.labels, args.label_smoothing)
    global_step = tf.train.get_or_create_global_step()
    lr = learning_rate(global_step, args.lr, int(args.warmup_epochs * steps_per_epoch), total_steps)
    train_op = tf.train.AdamOptimizer(lr).minimize(total_loss, global_step=global_step)
    correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(net.logits, 1, output_type=tf.int32), net.labels), tf.int32))
    summaries = tf.summary.merge([tf.summary.scalar("loss", cross_entropy), tf.summary.scalar("learning_rate", lr),
                                  tf.summary.scalar("accuracy", tf.cast(correct, tf.float32) / tf.cast(tf.shape(net.labels)[0], tf.float32))])
    best_saver = tf.train.Saver(net.model_variables, max_to_keep=1)
    last_saver = tf.train.Saver(max_to_keep=1)
    n_params = sum(int(np.prod(v.shape)) for v in tf.trainable_variables())
    print(f"{n_params:,} parameters")

    state_path = os.path.join(folder, "state.json")
    log_path = os.path.join(folder, "log.csv")
    with tf.Session() as session:
        def save_last(step):  # everything, optimizer state included; no .meta: config.json rebuilds the graph
            last_saver.save(session, os.path.join(folder, "last", "model.ckpt"), global_step=step, write_meta_graph=False)

        session.run(tf.global_variables_initializer())
        resume = checkpoints.latest(folder, "last")
        state = {"epoch": 0, "best_accuracy": 0.0, "best_epoch": 0}
        if resume:
            last_saver.restore(session, resume)
            if os.path.exists(state_path):
                state = checkpoints.read_json(state_path)
        step = int(session.run(global_step))
        if resume:
            print(f"resuming from {resume} at step {step} (epoch {step // steps_per_epoch + 1})")
        else:
            with open(log_path, "w", newline="") as f:
                csv.writer(f).writerow(LOG_FIELDS)
        writer = tf.summary.FileWriter(folder, session.graph if not resume else None)
        stopped_early, bar = False, None
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
                    feed = {net.images: train_x[batch], net.labels: train_labels[batch],
                            net.is_training: True, net.augment: True}
                    fetches = [train_op, cross_entropy, correct]
                    if step % 50 == 0:
                        fetches.append(summaries)
                    out = session.run(fetches, feed)
                    if not np.isfinite(out[1]):
                        last = checkpoints.latest(folder, "last")
                        kept = f"the last good checkpoint, {last}, is kept" if last else "nothing was saved"
                        raise cli.UserError(f"loss became {out[1]} at step {step} (epoch {epoch + 1}); {kept}; "
                                            "try a lower --lr")
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
                improved = val_acc > state["best_accuracy"]
                if improved:
                    best_saver.save(session, os.path.join(folder, "best", "model.ckpt"), global_step=step,
                                    latest_filename="checkpoint", write_meta_graph=False)
                    state.update(best_accuracy=val_acc, best_epoch=epoch)
                save_last(step)
                state["epoch"] = epoch
                checkpoints.write_json(state_path, state)
                with open(log_path, "a", newline="") as f:
                    csv.writer(f).writerow([epoch, step, f"{session.run(lr):.6g}", f"{np.mean(losses):.4f}",
                                            f"{hits / seen:.4f}", f"{val_loss:.4f}", f"{val_acc:.4f}",
                                            f"{seconds:.1f}", f"{seen / seconds:.0f}"])
                writer.add_summary(tf.Summary(value=[tf.Summary.Value(tag="val_accuracy", simple_value=val_acc),
                                                     tf.Summary.Value(tag="val_loss", simple_value=val_loss)]), step)
                writer.flush()
                print(f"epoch {epoch}: train loss {np.mean(losses):.4f} acc {hits / seen:.4f} | "
                      f"PublicTest loss {val_loss:.4f} acc {val_acc:.4f}{' (best)' if improved else ''} | "
                      f"{seconds:.0f} s, {seen / seconds:.0f} img/s")
        except KeyboardInterrupt:
            if bar is not None:
                bar.close()
            step = int(session.run(global_step))  # Ctrl-C may land after a step ran but before we counted it
            save_last(step)
            print(f"\ninterrupted: saved step {step} to {folder}/last; run the same command to resume")
            return 130
        finally:
            writer.close()
        if step % steps_per_epoch:
            save_last(step)
    plot_curves(log_path, os.path.join(folder, "curves.png"))
    done = "stopped early" if stopped_early else ("finished" if step >= total_steps else f"stopped at step {step}")
    print(f"{done}: best PublicTest accuracy {state['best_accuracy']:.4f} at epoch {state['best_epoch']}; "
          f"weights in {folder}/best, curves in {folder}/curves.png")


if __name__ == "__main__":
    cli.run(main)
