"""Labelled photo collections: a user's own faces, read the way predict reads photos.

    load(path, label_map=None, faces="auto", split=None) -> Collection
    is_collection(path)                       whether `path` is a folder of emotion folders

path: a folder of emotion folders (anger/, happy/, 1/ ... with label_map), each holding photos or
face crops (nested folders inside them are read too), or a CSV manifest with the columns
path,emotion[,subject][,split] (paths relative to the CSV; split train, val or test; a subject is a
person, kept on one side of any split made for training).  Folder names are read as collections spell
them: SYNONYMS map by themselves, classes the models do not have (OUTSIDE: contempt) are left out
with a note and their count, and label_map ({"1": "surprise", ...}; parse_label_map reads the
option's "1=surprise,2=fear") names the rest.

faces: "auto" takes a 48x48 image as it is (a FER-2013 or CK+48 crop) and finds the largest face in
anything else with predict's detector and alignment (ferkit.recognizer.locate, largest face); "detect"
and "as-is" (the whole image, resized) force one or the other.  An image that cannot be read, or
in which no face is found, is a skipped entry (file, reason), never an error, and the reading goes
on.  Nothing in the collection is ever written to.

Collection: faces uint8 (N, 48, 48, 1), labels int64 (N,), sources [{"file", "box" [x, y, w, h] or
None (the whole image), "subject" and "split" (a manifest's, else None)}] in the same order, skipped [(file, reason)], notes [str].
"""
import collections
import os
from dataclasses import dataclass, field

import numpy as np

from ferkit.cli import UserError
from ferkit.dataset import EMOTIONS, IMAGE_SIZE
from ferkit.photos import PhotoError, list_images, read_image
from ferkit.recognizer import locate
from ferkit.settings import FACES

SYNONYMS = {**{e: e for e in EMOTIONS}, "anger": "angry", "happiness": "happy", "sadness": "sad",
            "fearful": "fear", "disgusted": "disgust", "surprised": "surprise", "neutrality": "neutral"}
OUTSIDE = ("contempt",)  # emotions some collections label that the models do not have


class CollectionError(UserError):
    """A collection that cannot be used as it is: what is wrong, naming the folder or option."""


@dataclass
class Collection:
    faces: np.ndarray
    labels: np.ndarray
    sources: list
    skipped: list = field(default_factory=list)
    notes: list = field(default_factory=list)


def accepted_names():
    return ", ".join(sorted(SYNONYMS) + list(OUTSIDE))


def parse_label_map(text):
    """"1=surprise,2=fear" -> {"1": "surprise", "2": "fear"}; each value an emotion or a synonym (or contempt).
    A mapping already parsed (a dict), or None, is returned as it is."""
    if text is None or isinstance(text, dict):
        return text
    mapping = {}
    for item in filter(None, (text or "").split(",")):
        name, _, emotion = item.partition("=")
        if not name.strip() or emotion.strip().lower() not in {**SYNONYMS, **dict.fromkeys(OUTSIDE)}:
            raise CollectionError(f"--label-map {item}: expected FOLDER=EMOTION with EMOTION one of {accepted_names()}")
        mapping[name.strip()] = emotion.strip().lower()
    return mapping


def label_of(folder, name, label_map):
    """An emotion folder's name -> its label 0..6, or None for a class the models do not have."""
    word = (label_map or {}).get(name, name).lower()
    if word in OUTSIDE:
        return None
    if word not in SYNONYMS:
        raise CollectionError(f"{os.path.join(folder, name)}: unknown emotion folder {name!r}; accepted names are "
                              f"{accepted_names()}; name others with --label-map {name}=EMOTION[,...]")
    return EMOTIONS.index(SYNONYMS[word])


SPLIT_NAMES = {"train": "Training", "val": "PublicTest", "test": "PrivateTest"}


def _manifest_header(path):
    """A CSV manifest's column names (lower case), or None if `path` is not one (FER-2013's CSVs have no path column)."""
    import csv
    if not (os.path.isfile(path) and path.lower().endswith(".csv")):
        return None
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            header = [c.strip().lower() for c in next(csv.reader(f), [])]
    except (OSError, UnicodeDecodeError, csv.Error):
        return None
    return header if {"path", "emotion"} <= set(header) else None


def is_collection(path):
    """A CSV manifest (path,emotion[,subject][,split]), or a folder whose sub-folders are emotion
    folders (not FER-2013's train/ test/ image-folder copy)."""
    path = os.fspath(path)
    if _manifest_header(path):
        return True
    if not os.path.isdir(path):
        return False
    subdirs = [d for d in os.listdir(path) if os.path.isdir(os.path.join(path, d)) and not d.startswith(".")]
    return bool(subdirs) and not {d.lower() for d in subdirs} & {"train", "test", "val"}


class FaceReader:
    """read(path) -> (the image's 48x48 face uint8, the box it came from or None), as `faces` says (FACES);
    PhotoError (cannot be read) or ValueError ("no face found") for an image to skip.  YuNet is loaded
    at the first photo that needs it: a folder of 48x48 crops never loads it."""

    def __init__(self, faces="auto"):
        if faces not in FACES:
            raise CollectionError(f"--faces {faces}: expected one of {', '.join(FACES)}")
        self.faces, self.detector = faces, None

    def read(self, path):
        bgr = read_image(path)
        whole = self.faces == "as-is" or (self.faces == "auto" and bgr.shape[:2] == (IMAGE_SIZE, IMAGE_SIZE))
        if not whole and self.detector is None:
            from ferkit.detectors import make_detector
            self.detector = make_detector("yunet")
        found, faces = locate(None if whole else self.detector, bgr, largest=True)  # predict's own path
        if not len(faces):
            raise ValueError("no face found")
        return faces[0, ..., 0], None if found[0] is None else [int(v) for v in found[0].box]


def _classes(path, label_map):
    """The collection's emotion folders -> ([(folder path, label)], {left-out name: image count})."""
    classes, left_out = [], {}
    for name in sorted(os.listdir(path)):
        folder = os.path.join(path, name)
        if name.startswith(".") or not os.path.isdir(folder):
            continue
        label = label_of(path, name, label_map)
        if label is None:
            left_out[name] = len(list_images([folder], extensions=""))
        else:
            classes.append((folder, label))
    return classes, left_out


def _manifest(path, label_map):
    """A CSV manifest -> ([{"file", "label", "subject", "split"}], {left-out emotion: row count}); paths are
    relative to the CSV.  A row naming a missing file, an emotion it cannot map or an unknown split is a
    CollectionError naming the CSV's line."""
    import csv
    items, left_out = [], collections.Counter()
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = csv.DictReader(f)
        rows.fieldnames = [c.strip().lower() for c in rows.fieldnames]
        for line, row in enumerate(rows, 2):
            where = f"{path}:{line}"
            file = os.path.join(os.path.dirname(os.path.abspath(path)), (row.get("path") or "").strip())
            if not os.path.isfile(file):
                raise CollectionError(f"{where}: no such file {row.get('path')!r} (paths are relative to the CSV)")
            try:
                label = label_of(os.path.dirname(path), (row.get("emotion") or "").strip(), label_map)
            except CollectionError:
                raise CollectionError(f"{where}: unknown emotion {row.get('emotion')!r}; accepted names are "
                                      f"{accepted_names()}; name others with --label-map NAME=EMOTION[,...]") from None
            split = (row.get("split") or "").strip().lower()
            if split and split not in SPLIT_NAMES:
                raise CollectionError(f"{where}: unknown split {row.get('split')!r}; expected train, val or test")
            if label is None:
                left_out[row["emotion"].strip()] += 1
                continue
            items.append({"file": file, "label": label, "subject": (row.get("subject") or "").strip() or None,
                          "split": SPLIT_NAMES.get(split)})
    return items, dict(left_out)


def plan(path, label_map=None, split=None):
    """The collection's files and their labels -> ([{"file", "label", "subject", "split"}], {left-out
    class: file count}), from the folder names or the manifest alone (no image is read): CollectionError
    if a name cannot be mapped, or if fewer than two emotions have files.  split (Training, PublicTest or
    PrivateTest: a manifest's train, val, test): only that split's files; an error if it has none."""
    path, label_map = os.fspath(path), parse_label_map(label_map)
    if _manifest_header(path):
        items, left_out = _manifest(path, label_map)
    else:
        classes, left_out = _classes(path, label_map)
        # every file, not only image names: one that is not an image is a skipped entry, not left out unseen
        items = [{"file": file, "label": label, "subject": None, "split": None}
                 for folder, label in classes for file, _ in list_images([folder], extensions="")]
    if len({item["label"] for item in items}) < 2:
        raise CollectionError(f"{path}: {'no images' if not items else 'only one emotion'} in its emotion folders; "
                              "a collection needs photos of at least two emotions")
    if split:
        named = {v: k for k, v in SPLIT_NAMES.items()}[split]
        items = [item for item in items if item["split"] == split]
        if not items:
            raise CollectionError(f"{path}: no {named} rows ({split}); give a manifest a split column "
                                  "(train, val, test), or leave the split out to take all of it")
    return items, left_out


def load(path, label_map=None, faces="auto", progress=False, split=None):
    """Read the collection at `path` (only `split`'s files when given; see plan); see the module
    docstring.  CollectionError before any image is read if it is empty, has one class, or names a
    folder it cannot map (plan)."""
    from tqdm import tqdm
    reader = FaceReader(faces)
    items, left_out = plan(path, label_map, split)
    crops, labels, sources, skipped = [], [], [], []
    for item in tqdm(items, unit="photo", desc="reading the collection", disable=not progress):
        try:
            face, box = reader.read(item["file"])
        except (PhotoError, ValueError, OSError) as e:
            skipped.append((item["file"], str(e)))
            continue
        crops.append(face)
        labels.append(item["label"])
        sources.append({"file": item["file"], "box": box, "subject": item["subject"], "split": item["split"]})
    notes = [f"left out {n} images of {name}, an emotion the models do not have" for name, n in left_out.items()]
    if skipped:
        reasons = collections.Counter(reason if reason == "no face found" else "cannot be read" for _, reason in skipped)
        notes.append(f"skipped {len(skipped)} of {len(items)} images: "
                     + ", ".join(f"{n} {why}" for why, n in reasons.most_common()))
    if not crops:
        raise CollectionError(f"{path}: no face in any of its {len(items)} images; nothing to evaluate")
    return Collection(np.stack(crops)[..., None], np.array(labels, np.int64), sources, skipped, notes)
