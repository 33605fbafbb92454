"""Class-balanced answers from a trained model: its logits minus TAU x log(the class prior it learnt).

    python tools/balance_classes.py --checkpoint DIR --choose     PublicTest, TAU = 0 to 0.5; the pick
    python tools/balance_classes.py --checkpoint DIR [DIR ...] --choose --plot PNG   and the trade-off, drawn
    python tools/balance_classes.py --checkpoint DIR --tau TAU    fold TAU into DIR's best/ weights

A model learns the mean of its training targets as a prior.  FER+'s votes are
a third neutral and under 2% disgust, so the model trained on them calls a
face that could be either neutral, and rarely says disgust or fear.
Post-hoc logit adjustment (Menon et al., "Long-tail learning via logit
adjustment", ICLR 2021) subtracts TAU x log(prior) from the logits: 0 is the
model as trained, 1 the rule that is best for the mean of the per-class
recalls.  Subtracting a constant vector from the logits is a change of the
last layer's biases, so it is folded into them: every runtime and export of
the folder then answers balanced, with nothing added.

--choose scores TAU = 0, 0.05, ..., 0.5 on PublicTest against the labels the
model chose its checkpoints on (FER+'s majority labels, or FER-2013's), and
picks the largest TAU that costs at most 0.1 point of that accuracy.  For a
model trained with --refit (PublicTest trained on) choose on the same recipe
trained without it.  --plot draws each folder's FER+ accuracy against its
FER-2013 accuracy as TAU grows: how much of one label set each step buys
with the other.
--tau first records {"tau", "prior", "biases"} in config.json (biases: the
ones training left), then rewrites best/ from those biases.  Running it again,
after an interruption or with another TAU, starts from the trained biases;
--tau 0 puts them back.  The prior is the mean training target over the faces
the settings say were trained on (Training, and PublicTest with --refit),
label smoothing included.  evaluate.py's reports beside the weights describe
the weights before; run it again.
"""
import os

import numpy as np

from ferkit import backends, checkpoints, cli, data, ferplus, files
from ferkit.dataset import EMOTIONS, NUM_CLASSES
from ferkit.settings import TrainSettings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GRID = np.round(np.arange(0.0, 0.501, 0.05), 2)
TOLERANCE = 0.001  # 0.1 point of accuracy
BIASES = "logits/biases"


def learnt_prior(recorded, data_path):
    """The mean training target (7,) of a run with these config.json settings: the prior its logits carry.
    The targets are the ones training computed (ferkit.training.load_sets: FER+ vote shares, a teacher's,
    or one-hot labels), label smoothing applied as models.loss applies it."""
    from ferkit import training
    s = TrainSettings.from_json(recorded)
    s.data = data_path
    sets = training.load_sets(s)
    targets = np.eye(NUM_CLASSES)[sets.train_labels] if sets.train_targets is None else sets.train_targets
    return (1.0 - s.label_smoothing) * targets.mean(0) + s.label_smoothing / NUM_CLASSES


def public_test(folder, config, data_path):
    """PublicTest faces' log-probabilities (N, 7) as trained (any balance taken back out), and their labels
    on both label sets: {"FER+": (labels, mask), "FER-2013": (labels, mask)}, and the one chosen on."""
    faces, fer2013 = data.load(data_path, splits=("PublicTest",)).splits["PublicTest"]
    majority, clear = ferplus.majority(data.load_ferplus_votes(data_path, "PublicTest"))
    logp = np.log(np.maximum(backends.load(folder).predict(faces), 1e-30))
    balance = config.get("balance")
    if balance:
        logp = logp + balance["tau"] * np.log(balance["prior"])
    sets = {"FER+": (majority, clear), "FER-2013": (fer2013, np.ones(len(fer2013), bool))}
    return logp, sets, "FER-2013" if config["settings"].get("labels", "fer2013") == "fer2013" else "FER+"


def scores(predictions, labels, mask):
    """(accuracy, mean of the per-class recalls, per-class recalls (7,)) over the faces in mask."""
    y, p = labels[mask], predictions[mask]
    recall = np.array([(p[y == c] == c).mean() if (y == c).any() else np.nan for c in range(NUM_CLASSES)])
    return float((p == y).mean()), float(np.nanmean(recall)), recall


def choose(folder, config, data_path):
    """Prints PublicTest's scores for each TAU in GRID and the pick (config: the folder's config.json);
    returns [(TAU, {label set: scores})] and the pick's TAU."""
    prior = learnt_prior(config["settings"], data_path)
    logp, sets, chosen_on = public_test(folder, config, data_path)
    print(f"{folder}: PublicTest, logits - TAU x log(prior); prior {', '.join(f'{e} {p:.3f}' for e, p in zip(EMOTIONS, prior))}")
    print("  TAU   " + "   ".join(f"{name} accuracy, macro recall" for name in sets))
    rows = []
    for tau in GRID:
        predictions = (logp - tau * np.log(prior)).argmax(1)
        row = {name: scores(predictions, *labels) for name, labels in sets.items()}
        rows.append((tau, row))
        print(f"  {tau:.2f}  " + "   ".join(f"{row[n][0]:.4f}, {row[n][1]:.4f}".rjust(len(n) + 23) for n in sets))
    base = rows[0][1][chosen_on][0]
    tau, row = max((r for r in rows if r[1][chosen_on][0] >= base - TOLERANCE), key=lambda r: r[0])
    print(f"chosen: TAU {tau:.2f}, the largest within 0.1 point of {chosen_on} accuracy as trained "
          f"({row[chosen_on][0]:.4f} against {base:.4f}); macro recall {row[chosen_on][1]:.4f} against {rows[0][1][chosen_on][1]:.4f}")
    print("  per-class recall, " + chosen_on + ": " + ", ".join(f"{e} {r:.2f}" for e, r in zip(EMOTIONS, row[chosen_on][2])))
    return rows, tau


def plot(curves, path):
    """FER+ accuracy (x) against FER-2013 accuracy (y) along TAU, one line per folder, its pick circled.
    curves: [(folder, rows, chosen TAU)] as choose returns them."""
    fig, ax = files.new_figure(figsize=(6.5, 5))
    for folder, rows, chosen in curves:
        x = [row["FER+"][0] for _, row in rows]
        y = [row["FER-2013"][0] for _, row in rows]
        line, = ax.plot(x, y, "o-", ms=3, label=os.path.normpath(folder))
        for (tau, _), xi, yi in zip(rows, x, y):
            if tau in (0.0, chosen, GRID[-1]):
                ax.annotate(f"{tau:g}", (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=8)
            if tau == chosen:
                ax.plot(xi, yi, "o", ms=10, mfc="none", color=line.get_color())
    ax.set_xlabel("FER+ majority labels, accuracy")
    ax.set_ylabel("FER-2013 labels, accuracy")
    ax.set_title("PublicTest as TAU grows (circled: the pick)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    files.save_figure(fig, path)
    print(f"saved {path}")


def fold(folder, tau, data_path):
    path = checkpoints.finished_best(folder)
    config = checkpoints.read_config(folder)
    balance = config.get("balance")
    if balance is None:
        tf = cli.quiet_tensorflow()
        trained = tf.train.load_checkpoint(path).get_tensor(BIASES).astype(np.float64)
        prior = learnt_prior(config["settings"], data_path)
        balance = {"tau": 0.0, "prior": [float(p) for p in prior], "biases": [float(b) for b in trained]}
    balance["tau"] = float(tau)
    raw = cli.read_json(os.path.join(folder, checkpoints.CONFIG))
    raw["balance"] = balance
    files.write_json(os.path.join(folder, checkpoints.CONFIG), raw)  # first: a rerun starts from the trained biases
    biases = np.array(balance["biases"]) - tau * np.log(np.array(balance["prior"]))

    def shift(values):
        values[BIASES] = biases.astype(values[BIASES].dtype)
        return values
    checkpoints.rewrite(folder, shift)
    print(f"{folder}: best/ answers with logits - {tau:g} x log(prior) "
          f"({', '.join(f'{e} {b:+.2f}' for e, b in zip(EMOTIONS, biases - np.array(balance['biases'])))}); "
          "run evaluate.py again for its reports")


def main():
    parser = cli.ArgumentParser(__doc__)
    parser.add_argument("--checkpoint", required=True, nargs="+", metavar="DIR",
                        help="a finished training folder (several, to compare them, with --choose)")
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--choose", action="store_true", help="score TAU = 0 to 0.5 on PublicTest and pick one")
    action.add_argument("--tau", type=float, metavar="TAU", help="fold TAU (0 to 2; 0 restores the trained biases)")
    parser.add_argument("--plot", metavar="PNG", help="with --choose: draw the folders' trade-offs into PNG")
    parser.add_argument("--data", default=os.path.join(ROOT, "data", "fer2013.npz"),
                        help="the cache the model was trained from, with FER+ votes (default: %(default)s)")
    args = parser.parse_args()
    if args.tau is not None and not 0 <= args.tau <= 2:
        parser.error(f"--tau must be from 0 to 2, got {args.tau}")
    if args.tau is not None and len(args.checkpoint) > 1:
        parser.error("--tau folds into one folder at a time")
    if args.plot and not args.choose:
        parser.error("--plot draws what --choose scores; add --choose")
    if args.plot:  # before the scoring: a bad path fails at once
        if os.path.isdir(args.plot):
            raise cli.UserError(f"--plot {args.plot}: is a folder; give the PNG file to write, such as runs/balance.png")
        cli.output_parent(args.plot, "--plot", "the plot")
    if args.choose:
        configs = [checkpoints.read_config(folder) for folder in args.checkpoint]  # all read before any is scored
        curves = [(folder, *choose(folder, config, args.data)) for folder, config in zip(args.checkpoint, configs)]
        if args.plot:
            plot(curves, args.plot)
    else:
        fold(args.checkpoint[0], args.tau, args.data)


if __name__ == "__main__":
    cli.run(main)
