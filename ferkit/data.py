"""Reading FER-2013 in every layout users download, and the .npz cache.

  load(path, skip_bad=False, seed=0) -> Loaded
      path: fer2013.csv (plain or .gz), Kaggle's fer2013.tar.gz (or a .zip
      holding a CSV), icml_face_data.csv, the newer competition's train.csv
      (no Usage column), an image-folder copy (train/<emotion>/*.jpg, test/...),
      a labelled photo collection (a folder of emotion folders: ferkit.collection; all
      of it Training, with a validation split carved out), or a cache written by save_cache().
  save_cache(path, splits)    atomic write of the .npz cache
  class_count_table(splits)   printable class counts per split
  fingerprint(images, labels) a short hash: equal ones mean the same faces and labels

Loaded.splits maps split name -> (images uint8 (N, 48, 48, 1), labels int64 (N,)).
Bad input raises DataError, whose message names the file, the line (or the
image) and what is wrong; with skip_bad=True bad rows are collected in
Loaded.skipped instead.
"""
import gzip
import hashlib
import io
import os
import sys
import tarfile
import warnings
import zipfile
import zlib
from dataclasses import dataclass, field

import numpy as np
from isal import isal_zlib

from ferkit.cli import UserError, require_regular
from ferkit.files import atomic_write
from ferkit.dataset import EMOTIONS, IMAGE_SIZE, NUM_CLASSES, NUM_PIXELS, SPLITS
from ferkit.faces import one_hot
from ferkit.photos import IMAGE_EXTENSIONS, PhotoError

FORMATS = ("fer2013.csv[.gz], fer2013.tar.gz, icml_face_data.csv, train.csv, "
           "an image folder with train/<emotion>/ and test/<emotion>/, or a .npz cache")


class DataError(UserError):
    def __init__(self, path, where, what):
        super().__init__(f"{path}{':' + where if where else ''}: {what}")


@dataclass
class Loaded:
    splits: dict                                   # split -> (images, labels)
    skipped: list = field(default_factory=list)    # (where, what) of rows left out by skip_bad
    notes: list = field(default_factory=list)      # things the user should know (a carved split, ...)
    sources: dict = field(default_factory=dict)    # split -> str array (N,): where each face came from, "FILE[#x,y,w,h]"


def load(path, skip_bad=False, seed=0, splits=SPLITS, label_map=None, faces="auto"):
    """Read FER-2013 from any supported layout; see the module docstring. Only `splits` are kept
    (a cache does not even read the others: train.py never touches PrivateTest).  A collection's
    folder names go through label_map ({name: emotion}, or its text "1=surprise,2=fear"), and its
    images become faces as `faces` says (ferkit.settings.FACES)."""
    loaded = _load(os.fspath(path), skip_bad, seed, splits, label_map, faces)
    loaded.splits = {s: v for s, v in loaded.splits.items() if s in splits}
    return loaded


def _load(path, skip_bad, seed, splits, label_map=None, faces="auto"):
    if not os.path.exists(path) and os.path.isfile(path + ".gz"):  # fer2013.csv named, fer2013.csv.gz there
        print(f"note: {path} not found; reading {path}.gz beside it", file=sys.stderr)
        path += ".gz"
    require_regular(path, "data")
    if not os.path.exists(path):
        if path.endswith(".npz"):
            raise DataError(path, None, "no such cache; make it with: python preprocess.py --input YOUR_DOWNLOAD --out "
                            f"{path} (or pass --data YOUR_DOWNLOAD)")
        raise DataError(path, None, f"no such file or folder; expected {FORMATS}")
    from ferkit import collection
    if collection.is_collection(path):  # a folder of emotion folders, or a path,emotion manifest
        return _read_collection(path, seed, label_map, faces)
    if os.path.isdir(path):
        return _read_image_folder(path, skip_bad, seed, label_map, faces)
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as e:
        raise DataError(path, None, f"cannot read it ({e.strerror or e}); check the file's permissions") from None
    if path.endswith(".npz") or magic == b"PK\x03\x04" and _is_npz(path):
        return Loaded(load_cache(path, splits))
    try:
        if path.endswith((".tar.gz", ".tgz", ".tar")) or (magic[:2] == b"\x1f\x8b" and tarfile.is_tarfile(path)):
            return _read_tar(path, skip_bad, seed)
        if magic[:4] == b"PK\x03\x04":
            return _read_zip(path, skip_bad, seed)
        if magic[:2] == b"\x1f\x8b":
            from isal import igzip  # gzip at about 3x the speed of the standard library
            with igzip.open(path, "rb") as f:
                return _read_csv(f, path, skip_bad, seed)
        with open(path, "rb") as f:
            return _read_csv(f, path, skip_bad, seed)
    except (EOFError, zlib.error, isal_zlib.error, gzip.BadGzipFile) as e:
        raise DataError(path, None, f"the compressed file is damaged or incomplete ({e or type(e).__name__}); "
                        "download it again") from None
    except OSError as e:
        raise DataError(path, None, f"cannot read it ({e.strerror or e})") from None


def _is_npz(path):
    try:
        with zipfile.ZipFile(path) as z:
            return any(n.endswith(".npy") for n in z.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def _pick_csv(names, path):
    csvs = [n for n in names if n.lower().endswith(".csv")]
    known = [n for n in csvs if os.path.basename(n).lower() in ("fer2013.csv", "icml_face_data.csv", "train.csv")]
    if not (known or csvs):
        raise DataError(path, None, f"archive holds no .csv file; expected {FORMATS}")
    return (known or csvs)[0]


def _read_tar(path, skip_bad, seed):
    try:
        with tarfile.open(path, "r:*") as tar:
            member = _pick_csv([m.name for m in tar.getmembers() if m.isfile()], path)
            with tar.extractfile(member) as f:
                return _read_csv(io.BufferedReader(f), f"{path}/{member}", skip_bad, seed)
    except (tarfile.TarError, EOFError, OSError) as e:
        raise DataError(path, None, f"cannot read tar archive ({e}); download it again") from None


def _read_zip(path, skip_bad, seed):
    try:
        with zipfile.ZipFile(path) as z:
            member = _pick_csv(z.namelist(), path)
            with z.open(member) as f:
                return _read_csv(io.BufferedReader(f), f"{path}/{member}", skip_bad, seed)
    except (zipfile.BadZipFile, EOFError, OSError) as e:
        raise DataError(path, None, f"cannot read zip archive ({e}); download it again") from None
    except (RuntimeError, NotImplementedError) as e:  # encrypted, or compressed in a way zipfile cannot undo
        raise DataError(path, None, f"cannot read zip archive ({e}); unpack it with a zip tool and give the "
                        ".csv inside as --input") from None


class _BadRow(Exception):
    pass


def _parse_pixels(text):
    """b'p0 p1 ... p2303' -> uint8 (2304,); raises _BadRow saying what is wrong."""
    text = text.strip(b' "')
    # Fast path: np.fromstring parses in C, for a row of only digits and single spaces.  As
    # int64, not int32: its parser saturates a value too large for 64 bits at the int64
    # maximum, where int32 would wrap any value beyond 32 bits to its remainder and let it pass.
    values = None
    if text.count(b" ") == NUM_PIXELS - 1 and not text.translate(None, b"0123456789 "):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # older NumPy only warns on unparsable text
                values = np.fromstring(text, dtype=np.int64, sep=" ")
        except ValueError:  # NumPy >= 2.3: "could not be read to its end"
            values = None
    if values is None or values.size != NUM_PIXELS:
        return _parse_pixels_exactly(text.split())
    bad = np.flatnonzero((values < 0) | (values > 255))
    if bad.size:
        return _parse_pixels_exactly(text.split())  # names the bad value exactly
    return values.astype(np.uint8)


def _parse_pixels_exactly(tokens):
    """The slow path of _parse_pixels, in Python integers (exact at any size); raises _BadRow."""
    for i, token in enumerate(tokens):
        if not token.lstrip(b"-").isdigit():
            raise _BadRow(f"pixel {i} is {token.decode(errors='replace')!r}, not an integer")
    if len(tokens) != NUM_PIXELS:
        raise _BadRow(f"{len(tokens)} pixels, expected {NUM_PIXELS} ({IMAGE_SIZE}x{IMAGE_SIZE})")
    values = [int(t) for t in tokens]
    bad = next((i for i, v in enumerate(values) if not 0 <= v <= 255), None)
    if bad is not None:
        shown = str(values[bad]) if len(str(values[bad])) <= 12 else str(values[bad])[:12] + "..."
        raise _BadRow(f"pixel {bad} is {shown}, outside 0..255")
    return np.array(values, dtype=np.uint8)


def _parse_label(text):
    text = text.strip(b' "')
    if not text.isdigit() or int(text) >= NUM_CLASSES:
        raise _BadRow(f"emotion {text.decode(errors='replace')!r} is not a label 0..{NUM_CLASSES - 1}")
    return int(text)


def _parse_usage(text):
    usage = text.strip(b' "').decode(errors="replace")
    if usage not in SPLITS:
        raise _BadRow(f"unknown Usage {usage!r}; expected one of {', '.join(SPLITS)}")
    return SPLITS.index(usage)


MAX_LINE = 64 * 1024


def _csv_columns(header, name):
    """A FER-2013 CSV's first line (bytes) -> its column names, lower case; DataError unless it is a
    UTF-8 header with emotion and pixels columns."""
    if not header.strip():
        raise DataError(name, None, "file is empty; expected a FER-2013 CSV with columns emotion,pixels[,Usage]")
    if header.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DataError(name, "line 1", "UTF-16 text; FER-2013's CSV is plain ASCII/UTF-8: save it as UTF-8 and try again")
    try:
        columns = [c.strip().strip('"').strip().lower() for c in header.decode("utf-8-sig").strip().split(",")]
    except UnicodeDecodeError:
        if b"\x00" in header or b"," not in header:
            raise DataError(name, "line 1", "binary data, not a CSV file; expected a FER-2013 CSV with columns "
                            "emotion,pixels[,Usage]") from None
        raise DataError(name, "line 1", "text that is not UTF-8 (Latin-1 or another code page?); "
                        "FER-2013's CSV is plain ASCII/UTF-8: save it as UTF-8 and try again") from None
    missing = [c for c in ("emotion", "pixels") if c not in columns]
    if missing:
        raise DataError(name, "line 1", f"missing column(s) {', '.join(missing)} (found {', '.join(columns) or 'none'}); "
                        "expected a FER-2013 CSV with columns emotion,pixels[,Usage]")
    return columns


def _read_csv(stream, name, skip_bad, seed):
    """Binary line stream of a FER-2013 CSV -> Loaded. Line numbers count the header as line 1."""
    columns = _csv_columns(stream.readline(MAX_LINE), name)
    i_label, i_pixels = columns.index("emotion"), columns.index("pixels")
    i_usage = columns.index("usage") if "usage" in columns else None

    pixels = np.empty((4096, NUM_PIXELS), np.uint8)
    labels, usages, skipped = [], [], []
    n = 0
    # Lines are read with a bound: a damaged or hostile file holding one 1 GiB line is refused
    # instead of being read whole into memory (a FER-2013 row is under 10 KB).
    for lineno, line in enumerate(iter(lambda: stream.readline(MAX_LINE + 1), b""), start=2):
        if len(line) > MAX_LINE:
            raise DataError(name, f"line {lineno}", f"longer than {MAX_LINE // 1024} KB, far more than a FER-2013 "
                            "row (under 10 KB); not a FER-2013 CSV, or a damaged one")
        if not line.strip():
            continue
        try:
            fields = line.rstrip(b"\r\n").split(b",")
            if len(fields) != len(columns):
                raise _BadRow(f"{len(fields)} comma-separated fields, expected {len(columns)} ({','.join(columns)})")
            label = _parse_label(fields[i_label])
            usage = _parse_usage(fields[i_usage]) if i_usage is not None else 0
            row = _parse_pixels(fields[i_pixels])
        except _BadRow as e:
            if not skip_bad:
                raise DataError(name, f"line {lineno}", f"{e} (use --skip-bad to leave such rows out)") from None
            skipped.append((f"line {lineno}", str(e)))
            continue
        if n == len(pixels):
            pixels = np.concatenate([pixels, np.empty_like(pixels)])
        pixels[n] = row
        labels.append(label)
        usages.append(usage)
        n += 1
    if n == 0:
        if skipped:
            where, what = skipped[0]
            raise DataError(name, None, f"no usable rows: all {len(skipped)} data rows are bad (the first, {where}: {what})")
        raise DataError(name, None, "header but no data rows")

    images = pixels[:n].reshape(n, IMAGE_SIZE, IMAGE_SIZE, 1)
    labels, usages = np.array(labels, np.int64), np.array(usages)
    splits = {s: (images[usages == i], labels[usages == i]) for i, s in enumerate(SPLITS) if (usages == i).any()}
    loaded = Loaded(splits, skipped)
    if i_usage is None:
        _carve_validation(loaded, seed, name, "no Usage column")
    return loaded


def _stratified_pick(labels, n, rng):
    """Indices of n rows of `labels`, each class in proportion to its share (largest remainders)."""
    counts = np.bincount(labels, minlength=NUM_CLASSES)
    want = counts * n / counts.sum()
    take = np.floor(want).astype(int)
    take[np.argsort(take - want)[: n - take.sum()]] += 1
    return np.concatenate([rng.choice(np.flatnonzero(labels == c), take[c], replace=False) for c in range(NUM_CLASSES)])


def _split_off(loaded, source, target, n, rng):
    images, labels = loaded.splits[source]
    picked = np.zeros(len(labels), bool)
    picked[_stratified_pick(labels, n, rng)] = True
    loaded.splits[target] = (images[picked], labels[picked])
    loaded.splits[source] = (images[~picked], labels[~picked])
    if source in loaded.sources:
        names = loaded.sources[source]
        loaded.sources[target], loaded.sources[source] = names[picked], names[~picked]


def _carve_validation(loaded, seed, name, why):
    """No PublicTest given: carve a stratified, seeded, PublicTest-sized one (an eighth of Training, at most
    3589 rows, at least 1) out of Training; fewer than 2 Training rows cannot be split."""
    have = len(loaded.splits.get("Training", ((), ()))[1])
    if have < 2:
        raise DataError(name, None, f"{why} and {have} Training row(s): too few to carve a validation "
                        "split from; give at least 2 (FER-2013 has 28,709)")
    n = max(1, min(3589, have // 8))
    _split_off(loaded, "Training", "PublicTest", n, np.random.default_rng(seed))
    loaded.notes.append(f"{name} has {why}: carved a stratified validation split of {n} rows (seed {seed}) "
                        "out of Training as PublicTest")


def _read_collection(path, seed, label_map=None, faces="auto"):
    """A labelled photo collection (ferkit.collection: faces found and aligned as predict does) -> Loaded.
    A manifest's split column gives the splits (train, val, test: Training, PublicTest, PrivateTest);
    without one, all of it is Training less a seeded validation split as PublicTest: whole subjects
    where the manifest names them (no person on both sides), else stratified.  Skipped images are
    listed in Loaded.skipped."""
    from ferkit import collection
    found = collection.load(path, label_map, faces, progress=sys.stderr.isatty())
    loaded = Loaded({}, list(found.skipped), list(found.notes))
    origin = np.array([s["file"] + ("#" + ",".join(map(str, s["box"])) if s["box"] else "") for s in found.sources])
    split_of = np.array([s["split"] or "" for s in found.sources])  # each face's split
    subjects = [s["subject"] for s in found.sources]
    given = split_of.any()
    if not given and any(subjects):
        held = _subjects_apart(subjects, seed)
        split_of = np.where(held, "PublicTest", "Training")
        loaded.notes.append(f"{path}: validation split of {int(held.sum())} faces from {len(set(np.array(subjects)[held]))} "
                            f"of {len(set(subjects))} subjects (seed {seed}); no subject is on both sides")
    elif not given:
        split_of = np.full(len(split_of), "Training")
    for split in SPLITS:
        if (split_of == split).any():
            loaded.splits[split] = (found.faces[split_of == split], found.labels[split_of == split])
            loaded.sources[split] = origin[split_of == split]
    if "Training" not in loaded.splits:
        raise DataError(path, None, "its split column names no train rows to train on; mark some rows train, "
                        "or leave the column empty to have a validation split made")
    if "PublicTest" not in loaded.splits:
        _carve_validation(loaded, seed, path, "no val rows" if given else "no split of its own")
    return loaded


def _subjects_apart(subjects, seed):
    """Subjects (one per face, None for unnamed) -> bool mask (N,) of the validation faces: whole
    subjects, drawn in a seeded order until an eighth of the faces (at least one subject, never all)."""
    names = sorted({s or "" for s in subjects})
    order = np.random.default_rng(seed).permutation(len(names))
    subjects = np.array([s or "" for s in subjects])
    held = np.zeros(len(subjects), bool)
    for i in order[:max(1, len(names) - 1)]:
        if held.sum() >= len(subjects) / 8:
            break
        held |= subjects == names[i]
    return held


def _listdir(folder):
    try:
        return os.listdir(folder)
    except OSError as e:
        raise DataError(folder, None, f"cannot list the folder ({e.strerror}); check its permissions") from None


def _read_image_folder(root, skip_bad, seed, label_map=None, faces="auto"):
    """root/train/<emotion>/*.jpg, root/val/<emotion>/... and root/test/<emotion>/... (folder names in
    any case, emotion folders as collections spell them: ferkit.collection.label_of) -> Loaded.

    val/ is PublicTest.  test/ is FER-2013's PublicTest and PrivateTest together; files named
    PublicTest_*/PrivateTest_* (as in the common Kaggle copy) go to their own split, any others are
    halved, stratified and seeded, between the two (all of them PrivateTest where val/ is given).
    48x48 images are faces as they are; in other photos the largest face is found and aligned as
    predict does (collection.FaceReader), and one without a face is a skipped entry.
    """
    from ferkit import collection
    subdirs = {d.lower(): d for d in _listdir(root) if os.path.isdir(os.path.join(root, d))}
    if "train" not in subdirs:
        raise DataError(root, None, f"folder has no train/ subfolder; expected {FORMATS}")
    images = {s: [] for s in SPLITS}
    labels = {s: [] for s in SPLITS}
    unassigned = ([], [])
    skipped, reader, label_map = [], collection.FaceReader(faces), collection.parse_label_map(label_map)
    for part in ("train", "val", "test"):
        if part not in subdirs:
            continue
        part_dir = os.path.join(root, subdirs[part])
        for emotion_dir in sorted(_listdir(part_dir)):
            full = os.path.join(part_dir, emotion_dir)
            if not os.path.isdir(full):
                continue
            label = collection.label_of(part_dir, emotion_dir, label_map)
            if label is None:  # an emotion the models do not have (contempt)
                skipped.append((full, "an emotion the models do not have; left out"))
                continue
            for fname in sorted(_listdir(full)):
                fpath = os.path.join(full, fname)
                if os.path.isdir(fpath):
                    raise DataError(fpath, None, "a folder inside an emotion folder; the layout is train/<emotion>/"
                                    "IMAGE (and test/<emotion>/IMAGE): move its images up, or remove it")
                if fname.startswith(".") or not fname.lower().endswith(IMAGE_EXTENSIONS):
                    continue  # hidden files (macOS's ._NAME resource forks, .DS_Store) as predict.py skips them
                try:
                    face, _ = reader.read(fpath)
                except PhotoError as e:
                    if not skip_bad:
                        raise DataError(fpath, None, f"cannot read image: {e}; use --skip-bad to leave such images out") from None
                    skipped.append((fpath, f"cannot read image: {e}"))
                    continue
                except ValueError as e:  # a photo without a face: never an error, always listed
                    skipped.append((fpath, str(e)))
                    continue
                split = {"train": "Training", "val": "PublicTest"}.get(part) or next(
                    (s for s in SPLITS[1:] if fname.startswith(s)), "PrivateTest" if "val" in subdirs else None)
                dest = (images[split], labels[split]) if split else unassigned
                dest[0].append(face)
                dest[1].append(label)
    return _folder_splits(root, images, labels, unassigned, skipped, "test" in subdirs, seed)


def _folder_splits(root, images, labels, unassigned, skipped, has_test, seed):
    """What _read_image_folder gathered -> Loaded: {split: faces} lists stacked; test/ files of no named
    split halved into PublicTest and PrivateTest; without test/, a validation split carved from Training."""
    loaded = Loaded({}, skipped)
    for s in SPLITS:
        if labels[s]:
            loaded.splits[s] = (np.stack(images[s])[..., None], np.array(labels[s], np.int64))
    if not loaded.splits.get("Training"):
        raise DataError(root, None, "no readable images under train/<emotion>/")
    if unassigned[1]:
        test = (np.stack(unassigned[0])[..., None], np.array(unassigned[1], np.int64))
        if "PublicTest" in loaded.splits or "PrivateTest" in loaded.splits:
            raise DataError(root, None, "test/ mixes files named PublicTest_*/PrivateTest_* with others; "
                            "cannot tell which split the others belong to")
        loaded.splits["PrivateTest"] = test
        _split_off(loaded, "PrivateTest", "PublicTest", len(test[1]) // 2, np.random.default_rng(seed))
        loaded.notes.append(f"test/ split in halves, stratified (seed {seed}): PublicTest for validation, PrivateTest for reporting")
    elif not has_test:
        _carve_validation(loaded, seed, root, "no test/ folder")
    return loaded


def save_cache(path, splits, ferplus=None, sources=None):
    """Write `splits` as <Split>_images uint8 (N, 48, 48, 1) and <Split>_labels one-hot uint8 (N, 7),
    with ferplus ({split: uint8 (N, 10) FER+ votes}, rows aligned) <Split>_ferplus, and with sources
    ({split: str (N,)}, Loaded.sources) <Split>_sources: the photo and box each face came from.

    Written to a temporary file beside `path` and renamed into place, so an
    interrupted run never leaves a half-written cache.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise DataError(path, None, "is a folder; --out must be a file path such as data/fer2013.npz")
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise DataError(path, None, f"cannot create the folder {folder} ({e.strerror}); choose another --out") from None
    arrays = {}
    for s, (images, labels) in splits.items():
        arrays[f"{s}_images"] = images
        arrays[f"{s}_labels"] = one_hot(labels)
    for s, votes in (ferplus or {}).items():
        arrays[f"{s}_ferplus"] = votes
    for s, names in (sources or {}).items():
        arrays[f"{s}_sources"] = np.asarray(names, dtype=str)
    try:
        with atomic_write(path, "wb") as f:
            np.savez(f, **arrays)
    except OSError as e:
        raise DataError(path, None, f"cannot write it ({e.strerror or e}); choose another --out") from None


def load_cache(path, splits=SPLITS):
    """Cache written by save_cache -> {split: (images uint8 (N, 48, 48, 1), labels int64 (N,))} for `splits`."""
    with open(path, "rb") as f:
        if f.read(4) != b"PK\x03\x04":
            raise DataError(path, None, "not a .npz cache (a cache is a zip of .npy arrays; this file is not a zip); "
                            "make one with: python preprocess.py --input YOUR_DOWNLOAD --out " + os.fspath(path))
    try:
        _check_array_sizes(path)
        with np.load(path, allow_pickle=False) as z:
            if not any(f"{s}_images" in z.files for s in SPLITS):
                raise DataError(path, None, "cache holds no split; run preprocess.py again")
            raw = {s: (z[f"{s}_images"], z[f"{s}_labels"]) for s in splits if f"{s}_images" in z.files}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
        raise DataError(path, None, f"not a readable cache ({e}); run preprocess.py again") from None
    for s, (_, labels) in raw.items():
        if labels.ndim != 2 or labels.shape[1] != NUM_CLASSES or not (labels.sum(1) > 0).all():
            raise DataError(path, None, f"{s}_labels has shape {labels.shape} or rows without a label; expected "
                            f"one-hot rows (N, {NUM_CLASSES}): run preprocess.py again")
    splits = {s: (images, labels.argmax(1)) for s, (images, labels) in raw.items()}
    for s, (images, labels) in splits.items():
        if images.dtype != np.uint8 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE, 1):
            raise DataError(path, None, f"{s}_images has {images.dtype} {images.shape}, expected uint8 (N, 48, 48, 1)")
        if len(labels) != len(images):
            raise DataError(path, None, f"{s} has {len(images)} images but {len(labels)} labels; the cache is "
                            "damaged: run preprocess.py again")
    return splits


MAX_CACHE_BYTES = 4 << 30  # the arrays of a million faces per split, with room: a cache over this is not ours


def _check_array_sizes(path):
    """Refuse, before anything is allocated, an array whose .npy header claims more data than its
    member of the zip holds (a damaged or crafted cache could claim hundreds of GiB), and a cache
    whose members inflate to more than MAX_CACHE_BYTES in all (a zip bomb)."""
    with zipfile.ZipFile(path) as archive:
        inflated = sum(member.file_size for member in archive.infolist())
        if inflated > MAX_CACHE_BYTES:
            raise DataError(path, None, f"its arrays inflate to {inflated:,} bytes, more than a cache of ours holds "
                            f"({MAX_CACHE_BYTES:,}); it is damaged or not ours: run preprocess.py again")
        for member in archive.infolist():
            if not member.filename.endswith(".npy"):
                continue
            with archive.open(member) as f:
                version = np.lib.format.read_magic(f)
                read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                shape, _, dtype = read(f)
            claimed = int(np.prod(shape, dtype=np.float64) * dtype.itemsize)
            if claimed > member.file_size:
                raise DataError(path, None, f"{member.filename} claims {claimed:,} bytes of data in "
                                f"{member.file_size:,}; the cache is damaged: run preprocess.py again")


def load_ferplus_votes(path, split):
    """The FER+ votes uint8 (N, 10) that preprocess.py --ferplus stored in a cache for `split`."""
    path = os.fspath(path)
    if not path.endswith(".npz"):
        raise DataError(path, None, "FER+ labels come from a cache: run python preprocess.py --input fer2013.csv "
                        "--ferplus fer2013new.csv, then pass the cache as --data")
    with np.load(path, allow_pickle=False) as z:
        if f"{split}_ferplus" not in z.files:
            raise DataError(path, None, f"cache holds no FER+ votes for {split}; make it again with "
                            "python preprocess.py --input fer2013.csv --ferplus fer2013new.csv")
        return z[f"{split}_ferplus"]


def class_count_table(splits):
    """Printable table: one row per split, one column per emotion, and the total."""
    head = f"{'split':<12}" + "".join(f"{e:>9}" for e in EMOTIONS) + f"{'total':>9}"
    rows = [head]
    for s, (_, labels) in splits.items():
        counts = np.bincount(labels, minlength=NUM_CLASSES)
        rows.append(f"{s:<12}" + "".join(f"{c:>9}" for c in counts) + f"{len(labels):>9}")
    return "\n".join(rows)


def fingerprint(images, labels):
    """A short hash of a split's faces and labels: two reports (or caches) with the same one were computed on the same data."""
    digest = hashlib.sha256(np.ascontiguousarray(images).tobytes())
    digest.update(np.asarray(labels).astype("int64").tobytes())
    return digest.hexdigest()[:16]
