"""FER+ label votes (Barsoum et al. 2016, Microsoft, MIT licence): reading them, and majority labels.

  votes = read_votes(path)           fer2013new.csv -> {split: uint8 (N, 10) votes}, rows in file order
  labels, clear = majority(votes)    uint8 (N, 10) -> int64 (N,) labels in EMOTIONS order, bool (N,) clear majority
  shares, has = vote_shares(votes)   uint8 (N, 10) -> float32 (M, 7) each voted face's share per emotion, bool (N,)
  targets, has = vote_targets(votes, fer2013_labels, fer2013_weight)   what train.py --labels ferplus|both learns

fer2013new.csv has one row per row of fer2013.csv, in the same order, with the
votes of 10 annotators over VOTE_COLUMNS.  A face has a clear majority when one
of the 7 emotions has more votes than every other column; faces FER+ dropped
(no votes, or 'not a face'), and faces whose most-voted column is contempt,
unknown or not-a-face, or where two columns tie, have none, and are left out of
FER+ scores (and counted).
"""
import csv
import io

import numpy as np

from ferkit.cli import require_regular
from ferkit.data import DataError
from ferkit.dataset import EMOTIONS, SPLITS

VOTE_COLUMNS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt", "unknown", "NF")
# For each of our emotions (EMOTIONS order), its column in VOTE_COLUMNS.
EMOTION_COLUMNS = tuple(VOTE_COLUMNS.index(c) for c in ("anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral"))
assert len(EMOTION_COLUMNS) == len(EMOTIONS)


MAX_BYTES = 64 << 20  # FER+'s votes file is about 2 MB


def read_votes(path):
    """fer2013new.csv -> {split: uint8 (N, 10)} in file order; DataError naming the line for a bad row."""
    require_regular(path, "--ferplus file")  # /dev/zero or a FIFO: never read
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_BYTES + 1)
        if len(raw) > MAX_BYTES:
            raise DataError(path, None, f"over {MAX_BYTES >> 20} MB; FER+'s fer2013new.csv is about 2 MB")
        text = raw.decode("utf-8-sig")
    except OSError as e:
        raise DataError(path, None, f"cannot read it ({e.strerror or e})") from None
    except UnicodeDecodeError:
        raise DataError(path, None, "not a text file; expected FER+'s fer2013new.csv") from None
    rows = csv.reader(io.StringIO(text))
    header = [c.strip() for c in next(rows, [])]
    if header[:1] != ["Usage"] or header[2:] != list(VOTE_COLUMNS):
        raise DataError(path, "line 1", f"not FER+'s header; expected Usage,Image name,{','.join(VOTE_COLUMNS)}")
    votes = {s: [] for s in SPLITS}
    for lineno, row in enumerate(rows, start=2):
        if not row:
            continue
        if len(row) != len(header) or row[0] not in SPLITS:
            raise DataError(path, f"line {lineno}", f"expected {len(header)} fields starting with one of {', '.join(SPLITS)}")
        try:
            counts = [int(v) for v in row[2:]]
        except ValueError:
            raise DataError(path, f"line {lineno}", "votes must be whole numbers") from None
        if min(counts) < 0 or max(counts) > 255:
            raise DataError(path, f"line {lineno}", "votes must be in 0..255")
        votes[row[0]].append(counts)
    return {s: np.array(v, np.uint8).reshape(-1, len(VOTE_COLUMNS)) for s, v in votes.items() if v}


def majority(votes):
    """uint8 votes (N, 10) -> (labels int64 (N,) in EMOTIONS order (0 where unclear), clear bool (N,))."""
    votes = np.asarray(votes, np.int64)
    top = votes.max(1)
    winner = votes.argmax(1)
    unique = (votes == top[:, None]).sum(1) == 1
    is_emotion = np.isin(winner, EMOTION_COLUMNS)
    clear = unique & is_emotion & (top > 0)
    to_ours = np.zeros(len(VOTE_COLUMNS), np.int64)
    to_ours[list(EMOTION_COLUMNS)] = np.arange(len(EMOTIONS))
    return np.where(clear, to_ours[winner], 0), clear


def vote_shares(votes):
    """uint8 votes (N, 10) -> (float32 (M, 7) vote shares over the 7 emotions in EMOTIONS order, for the M
    faces with at least one emotion vote; has_votes bool (N,) saying which).  What train.py --labels
    ferplus learns from, and whose mean is the class prior such a model has learnt."""
    emotion_votes = np.asarray(votes)[:, list(EMOTION_COLUMNS)].astype(np.float32)
    has_votes = emotion_votes.sum(1) > 0
    return emotion_votes[has_votes] / emotion_votes[has_votes].sum(1, keepdims=True), has_votes


def vote_targets(votes, fer2013_labels, fer2013_weight=0.0):
    """Training targets from votes uint8 (N, 10) and the same faces' FER-2013 labels int (N,): (1 - W) x the
    vote shares + W x the one-hot FER-2013 label (W = fer2013_weight; 0 for --labels ferplus), float32 (M, 7)
    for the M faces with emotion votes, and has_votes bool (N,)."""
    shares, has_votes = vote_shares(votes)
    one_hot = np.eye(len(EMOTIONS), dtype=np.float32)[np.asarray(fer2013_labels)[has_votes]]
    return ((1.0 - fer2013_weight) * shares + fer2013_weight * one_hot).astype(np.float32), has_votes
