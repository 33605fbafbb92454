"""Evaluation, as a library: accuracy reports of trained models on a FER-2013 split, or on a labelled
photo collection (ferkit.collection: a folder of emotion folders).

    from ferkit import evaluation
    reports = evaluation.evaluate(models=["acnn_alstm"], split="PrivateTest", tta=True)
    reports[0]["accuracy"], reports[0]["per_class"], reports[0]["confusion"], reports[0]["tta"]["accuracy"]

Each report (a dict, as the .json file holds it): model, checkpoint, split, backend, quantize,
precision, data (path, labels, faces, fingerprint[, left_out]), accuracy, per_class, macro,
confusion, faces_per_s[, tta].  It is saved as <stem>.json and <stem>.png (the confusion matrix):
beside a checkpoint as eval_<split>*, beside an export as NAME.eval_<split>*, in
runs/eval/NAME/ for a shipped model (which no command writes into), or in `out`.  A report
computed on other data is never replaced: the new one gets the data's fingerprint in its name.
On a collection the split is "collection", the data entry adds skipped (images left out, with
why, in <stem>.skipped.csv), and two more files go beside the report: <stem>.faces.csv (every face:
file, box, true and predicted emotion, the 7 probabilities) and <stem>.mistakes.png (the aligned
faces it got wrong, true -> predicted, the most confident mistakes first).
"""
import os
import sys
import time

from ferkit import backends, cli, data, files, metrics
from ferkit.dataset import CACHE

VARIANT_HEADER = ("model", "checkpoint", "split", "backend", "quantize", "precision", "data")


def report_stem(folder, name, data_info):
    """folder/name, unless a report there was computed on other data (or says not on which): then
    folder/name-<fingerprint>, so that no report is replaced by one of other data."""
    stem = os.path.join(folder, name)
    if os.path.exists(stem + ".json"):
        try:
            old = cli.read_json(stem + ".json")
            old = old.get("data", {}) if isinstance(old, dict) else {}
        except (ValueError, OSError):  # not JSON, or a folder by that name: not ours to replace
            old = {}
        if old.get("fingerprint") != data_info["fingerprint"]:
            return f"{stem}-{data_info['fingerprint'][:8]}"
    return stem


def report_base(classifier, out=None):
    """(folder, prefix) of a model's reports: a checkpoint's go inside its folder as eval_*, an
    exported model's beside it as NAME.eval_* (the .tflite file or SavedModel folder NAME).
    A shipped model is read-only, so its reports go to runs/eval/<its name>/ instead; out
    replaces the folder in every case."""
    path = os.path.normpath(classifier.path)
    if classifier.backend == "checkpoint":
        folder, prefix = classifier.folder, "eval_"
    else:
        folder, prefix = os.path.dirname(path), os.path.splitext(os.path.basename(path))[0] + ".eval_"
    if out is None and backends.is_shipped(path):
        out = os.path.join("runs", "eval", os.path.basename(os.path.normpath(folder)))
    return out or folder, prefix


def report_stems(classifier, split, labels, tta, out, data_info):
    """{variant suffix ("" and, with tta, "_tta"): the path its report's .json and .png take, less the extension}."""
    folder, prefix = report_base(classifier, out)
    precision = "_bf16" if classifier.bfloat16 else ""
    tag = "_ferplus" if labels == "ferplus" else ""  # FER+ reports sit beside FER-2013's
    return {suffix: report_stem(folder, f"{prefix}{split}{tag}{suffix}{precision}", data_info)
            for suffix in ("", "_tta")[:1 + tta]}


def load_faces(path, split, labels="fer2013", log=None):
    """The data set's `split` faces and labels (FER+'s majority labels with labels="ferplus") -> (images
    uint8 (N, 48, 48, 1), labels (N,), the report's "data" entry: path, labels, faces, fingerprint[, left_out])."""
    log = log or sys.stdout  # looked up at the call: callers (and tests) redirect sys.stdout
    splits = data.load(path, splits=(split,)).splits
    if len(splits.get(split, ((), ()))[1]) == 0:
        have = [s for s, (_, y) in data.load(path).splits.items() if len(y)]
        raise cli.UserError(f"{path}: no {split} faces (it has {', '.join(have) if have else 'no split'}); "
                            "choose another split or data set")
    images, truth = splits[split]
    data_info = {"path": path, "labels": labels}
    if labels == "ferplus":
        from ferkit import ferplus
        truth, clear = ferplus.majority(data.load_ferplus_votes(path, split))
        images, truth = images[clear], truth[clear]
        data_info["left_out"] = int((~clear).sum())  # no clear FER+ majority among the 7 emotions
        print(f"FER+ labels: {len(truth)} {split} faces with a clear majority, {data_info['left_out']} left out", file=log)
    data_info.update(faces=len(truth), fingerprint=data.fingerprint(images, truth))
    return images, truth, data_info


def load_models(paths, bf16=False, out=None):
    """Model paths -> loaded classifiers, each checked (and where its reports go found writable) before
    any data is read: a wrong name fails in a second, not after minutes of computing."""
    for path in paths:
        backends.check(path)
    classifiers = [backends.load(p, bfloat16=bf16) for p in paths]
    for classifier in classifiers:
        folder = report_base(classifier, out)[0]
        if out or backends.is_shipped(classifier.path):
            cli.output_folder(folder, "--out")
        cli.check_writable(folder, "the evaluation reports (give --out, a writable folder)")
    return classifiers


def load_collection(path, label_map=None, faces="auto", log=None, split=None):
    """A labelled photo collection (only a manifest's `split` rows when given) -> (images uint8
    (N, 48, 48, 1), labels (N,), the report's "data" entry, the ferkit.collection.Collection), its notes
    (classes left out, images skipped) printed.  label_map: {folder name: emotion}, or its text
    "1=surprise,2=fear" (collection.parse_label_map)."""
    from ferkit import collection
    log = log or sys.stdout
    found = collection.load(path, label_map, faces, progress=log is sys.stderr, split=split)
    for note in found.notes:
        print(f"{path}: {note}", file=log)
    data_info = {"path": path, "labels": "collection", "faces": len(found.labels), "skipped": len(found.skipped),
                 "face_path": faces, "fingerprint": data.fingerprint(found.faces, found.labels)}
    return found.faces, found.labels, data_info, found


def report_of(classifier, images, truth, split, data_info, tta=False, batch_size=256):
    """One model's report on (images, truth): the dict the .json holds, with "tta" when asked for, and
    its probabilities float32 (N, 7)."""
    report = {"model": classifier.name, "checkpoint": classifier.path, "split": split,
              "backend": classifier.backend, "quantize": classifier.quantize,
              "precision": "bfloat16" if classifier.bfloat16 else "float32", "data": data_info}
    start = time.perf_counter()
    probabilities = classifier.predict(images, batch_size)
    seconds = time.perf_counter() - start
    report.update(metrics.classification_report(truth, probabilities.argmax(1)))
    report["faces_per_s"] = round(len(truth) / seconds, 1)
    if tta:
        report["tta"] = metrics.classification_report(truth, classifier.predict(images, batch_size, tta=True).argmax(1))
    return report, probabilities


def write_face_table(found, probabilities, stem):
    """<stem>.faces.csv, a row per face of the collection, and <stem>.skipped.csv, a row per image left out."""
    import csv
    from ferkit.dataset import EMOTIONS
    with files.atomic_write(stem + ".faces.csv", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "x", "y", "w", "h", "emotion", "predicted", *EMOTIONS])
        for source, label, p in zip(found.sources, found.labels, probabilities):
            box = source["box"] or ["", "", "", ""]
            writer.writerow([source["file"], *box, EMOTIONS[label], EMOTIONS[int(p.argmax())], *(f"{v:.4f}" for v in p)])
    with files.atomic_write(stem + ".skipped.csv", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "reason"])
        writer.writerows(found.skipped)


def mistakes_sheet(faces, truth, probabilities, path, limit=100, columns=10):
    """The faces (uint8 (N, 48, 48, 1)) the model got wrong as a contact sheet PNG, each at 2x with
    "true > predicted" under it, the most confident mistakes first (at most `limit`)."""
    import cv2
    import numpy as np
    from ferkit.dataset import EMOTIONS
    predicted = probabilities.argmax(1)
    wrong = np.flatnonzero(predicted != truth)
    wrong = wrong[np.argsort(-probabilities[wrong, predicted[wrong]], kind="stable")][:limit]
    cell, caption = 96, 18
    rows = max(1, -(-len(wrong) // columns))
    sheet = np.full((rows * (cell + caption), columns * cell, 3), 255, np.uint8)
    for k, i in enumerate(wrong):
        top, left = (k // columns) * (cell + caption), (k % columns) * cell
        sheet[top:top + cell, left:left + cell] = cv2.cvtColor(cv2.resize(faces[i, ..., 0], (cell, cell)), cv2.COLOR_GRAY2BGR)
        cv2.putText(sheet, f"{EMOTIONS[truth[i]][:3]}>{EMOTIONS[predicted[i]][:3]}", (left + 3, top + cell + 13),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 160), 1, cv2.LINE_AA)
    png = cv2.imencode(".png", sheet)[1]
    with files.atomic_write(path, "wb") as f:
        f.write(png.tobytes())
    return len(wrong)


def save_report(report, stem_of, log=None, show=True):
    """Each variant of a report as <stem>.json and the confusion matrix as <stem>.png: one variant per
    file, so that a plain run never replaces (or drops) a TTA report.  show: print each as a table."""
    log = log or sys.stdout  # looked up at the call: callers (and tests) redirect sys.stdout
    variants = [("", {k: v for k, v in report.items() if k != "tta"})]
    if "tta" in report:
        variants.append(("_tta", {**{k: report[k] for k in VARIANT_HEADER}, **report["tta"]}))
    for suffix, r in variants:
        stem = stem_of[suffix]
        files.write_json(stem + ".json", r)
        metrics.plot_confusion(r, f"{report['model']} on {report['split']}{' (TTA)' if suffix else ''}: "
                                  f"accuracy {r['accuracy']:.4f}", stem + ".png")
        if show:
            print(f"\n{report['model']}{' with TTA' if suffix else ''}\n{metrics.format_report(r)}", file=log)
    print(f"saved {stem}.json and .png" + (" (reports computed on other data are kept)"
                                           if "-" in os.path.basename(stem) else ""), file=log)


def evaluate(models=(), checkpoints=(), data=CACHE, split=None, tta=False, batch_size=256, bf16=False,
             labels="fer2013", out=None, overwrite=False, log=None, show=True, label_map=None, faces="auto"):
    """Report each model on `split` of `data` (default PrivateTest) -> [report dict, one per model, in order].
    data may be a labelled photo collection (a folder of emotion folders, or a manifest): then all of
    it is evaluated (split "collection"), or with `split` only its manifest's rows of that split
    (PrivateTest: test, ...; split "collection_PrivateTest"), its folder names mapped with label_map
    ("1=surprise,..." or a dict) and its faces found as `faces` says (auto, detect, as-is; ferkit.collection).

    models: shipped names; checkpoints: checkpoint folders, .tflite files or SavedModel folders.
    labels: "fer2013", or "ferplus" (FER+'s majority labels; needs a cache made with --ferplus).
    out: the reports' folder instead of beside each model.  overwrite: replace report files this
    toolkit did not write.  log: where progress lines go; show: print each report as a table there.
    Raises FerkitError (a bad model, data set or output) before anything is written."""
    log = log or sys.stdout  # looked up at the call: callers (and tests) redirect sys.stdout
    if batch_size < 1:
        raise cli.UserError(f"--batch-size must be at least 1, got {batch_size}")
    paths = list(checkpoints) + [backends.resolve(model=m, fast=False) for m in models]
    from ferkit import collection
    found, is_collection = None, collection.is_collection(data)
    if is_collection:  # its folder names checked before any model is loaded or folder made
        collection.plan(data, label_map, split)
    if out:  # before load_models makes the folder: never inside the data or a model
        files.check_outputs([("--out", out, "folder")], inputs=[data, *paths], overwrite=True)
    classifiers = load_models(paths, bf16, out)
    if is_collection:
        images, truth, data_info, found = load_collection(data, label_map, faces, log, split)
        split = f"collection_{split}" if split else "collection"
    else:
        split = split or "PrivateTest"
        images, truth, data_info = load_faces(data, split, labels, log)
    stems = [report_stems(c, split, labels, tta, out, data_info) for c in classifiers]
    extras = (".faces.csv", ".skipped.csv", ".mistakes.png") if found else ()
    outputs = sorted({stem + ext for by_variant in stems for stem in by_variant.values() for ext in (".json", ".png")}
                     | {by_variant[""] + ext for by_variant in stems for ext in extras})
    files.check_outputs([("the report", path, "file") for path in outputs],  # a model named twice: one report
                        inputs=[data] + [p for c in classifiers for p in backends.model_inputs(c.path)],
                        overwrite=overwrite)
    reports = []
    for classifier, stem_of in zip(classifiers, stems):
        print(f"{classifier.name}: {classifier.path} ({classifier.backend}) on {split} ({len(truth)} faces)", file=log)
        report, probabilities = report_of(classifier, images, truth, split, data_info, tta, batch_size)
        save_report(report, stem_of, log, show)
        if found:
            write_face_table(found, probabilities, stem_of[""])
            wrong = mistakes_sheet(images, truth, probabilities, stem_of[""] + ".mistakes.png")
            print(f"every face in {stem_of['']}.faces.csv, {len(found.skipped)} skipped images in .skipped.csv, "
                  f"{wrong} mistakes pictured in .mistakes.png", file=log)
        reports.append(report)
    return reports


def comparison_table(reports):
    """Several reports -> one table, a line per model."""
    tta = all("tta" in r for r in reports)
    lines = [f"{'model':<12}{'accuracy':>10}{'macro F1':>10}" + (f"{'TTA acc':>10}{'TTA F1':>10}" if tta else "")
             + "  checkpoint"]
    for r in reports:
        extra = f"{r['tta']['accuracy']:>10.4f}{r['tta']['macro']['f1']:>10.4f}" if tta else ""
        lines.append(f"{r['model']:<12}{r['accuracy']:>10.4f}{r['macro']['f1']:>10.4f}{extra}  {r['checkpoint']}")
    return "\n".join(lines)
