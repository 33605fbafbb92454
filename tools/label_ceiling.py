"""How far FER+'s majority labels and FER-2013's labels can both be right: the scores of the targets themselves.

    python tools/label_ceiling.py [--data data/fer2013.npz]

A model trained with `train.py --labels ferplus|both --fer2013-weight W`
learns the targets ferplus.vote_targets makes: (1 - W) x each face's FER+
vote shares + W x its one-hot FER-2013 label.  A model that learnt them
perfectly would answer their arg max.  This prints, for each held-out split
and W, that answer's accuracy on FER+'s majority labels (clear faces, as
evaluate.py --labels ferplus scores) and on FER-2013's labels (faces with
emotion votes): the most a model of that recipe could reach on each.  At
W = 0 the second column says how often the two label sets agree.  A tie in
the targets goes to the first emotion in EMOTIONS order.
"""
import os

import numpy as np

from ferkit import cli, data, ferplus

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)


def ceiling(votes, fer2013_labels, weight):
    """uint8 votes (N, 10), int FER-2013 labels (N,), W -> (accuracy of the targets' arg max on FER+'s
    clear majority labels, on FER-2013's labels over the faces with emotion votes)."""
    targets, has_votes = ferplus.vote_targets(votes, fer2013_labels, weight)
    answers = np.full(len(fer2013_labels), -1)
    answers[has_votes] = targets.argmax(1)
    majority, clear = ferplus.majority(votes)
    return (float((answers[clear] == majority[clear]).mean()),
            float((answers[has_votes] == np.asarray(fer2013_labels)[has_votes]).mean()))


def main():
    parser = cli.ArgumentParser(__doc__)
    parser.add_argument("--data", default=os.path.join(ROOT, "data", "fer2013.npz"),
                        help="preprocess.py's cache, made with --ferplus (default: %(default)s)")
    args = parser.parse_args()
    splits = ("PublicTest", "PrivateTest")
    loaded = data.load(args.data, splits=splits).splits
    votes = {s: data.load_ferplus_votes(args.data, s) for s in splits}
    print("W     " + "   ".join(f"{s}: FER+, FER-2013" for s in splits))
    for weight in WEIGHTS:
        cells = [ceiling(votes[s], loaded[s][1], weight) for s in splits]
        print(f"{weight:.1f}   " + "   ".join(f"{a:.4f}, {b:.4f}".rjust(len(s) + 16) for s, (a, b) in zip(splits, cells)))


if __name__ == "__main__":
    cli.run(main)
