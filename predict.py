"""Emotions of the faces in photos, with a trained model.

    python predict.py PATH [PATH ...] [--model acnn_alstm] [--json] [--annotate OUT_DIR]
                      [--no-detect] [--largest] [--explain OUT_DIR]
    python predict.py --camera 0 | --video FILE [--annotate OUT_DIR]

PATH is an image file or a folder of them.  Faces are found with OpenCV's
Haar cascade, cropped, turned gray, resized to 48x48 and classified; every
face is reported, largest first.  --no-detect treats each whole image as one
face (for pre-cropped faces such as FER-2013's own).  A bad file is reported
in its entry and on stderr, the others are still processed, and the exit
status is 1 if any image failed.
"""
import argparse
import json
import os
import sys

import cv2
import numpy as np

from fer import checkpoints, cli
from fer.faces import EMOTIONS
from fer.photos import FaceDetector, PhotoError, crop_faces, list_images, read_gray


def classify(classifier, detector, gray, args):
    """uint8 (H, W) -> ([{"box", "emotion", "probabilities"}, ...] largest first, faces uint8 (N, 48, 48, 1),
    local attention (N, 36) with --explain, else None): one run of the model gives both."""
    h, w = gray.shape
    boxes = [(0, 0, w, h)] if detector is None else detector.detect(gray)
    if args.largest:
        boxes = boxes[:1]
    faces = crop_faces(gray, boxes)
    attention = None
    if getattr(args, "explain", None):
        probabilities, extra = classifier.predict(faces, extra=("local_attention",))
        attention = extra["local_attention"]
    else:
        probabilities = classifier.predict(faces)
    results = [{"box": list(box), "emotion": EMOTIONS[int(p.argmax())],
                "probabilities": {e: round(float(v), 4) for e, v in zip(EMOTIONS, p)}}
               for box, p in zip(boxes, probabilities)]
    return results, faces, attention


def draw(image, results):
    """Boxes and 'emotion 93%' labels on a BGR image, in place."""
    thickness = max(2, round(max(image.shape[:2]) / 300))
    scale = thickness / 3
    for r in results:
        x, y, w, h = r["box"]
        label = f"{r['emotion']} {r['probabilities'][r['emotion']]:.0%}"
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness // 2 + 1)
        top = max(y - th - base - 4, 0)  # above the box, or inside it at the top of the image
        cv2.rectangle(image, (x, y), (x + w, y + h), (0, 200, 0), thickness)
        cv2.rectangle(image, (x, top), (x + tw + 6, top + th + base + 4), (0, 200, 0), cv2.FILLED)
        cv2.putText(image, label, (x + 3, top + th + 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thickness // 2 + 1)
    return image


def attention_map(face, weights, size=192):
    """Face uint8 (48, 48, 1) and local attention (36,) -> BGR (size, 2*size): the face, and the heat map over it."""
    grid = int(round(len(weights) ** 0.5))
    heat = cv2.resize(weights.reshape(grid, grid) / weights.max(), (size, size), interpolation=cv2.INTER_CUBIC)
    heat = cv2.applyColorMap(np.clip(heat * 255, 0, 255).astype(np.uint8), cv2.COLORMAP_JET)
    gray = cv2.cvtColor(cv2.resize(face[:, :, 0], (size, size), interpolation=cv2.INTER_CUBIC), cv2.COLOR_GRAY2BGR)
    return np.hstack([gray, cv2.addWeighted(gray, 0.5, heat, 0.5, 0)])


def predict_photos(classifier, detector, args):
    entries, failed = [], 0
    for path in list_images(args.paths):
        entry = {"path": path, "faces": [], "error": None}
        entries.append(entry)
        try:
            gray = read_gray(path)
        except PhotoError as e:
            entry["error"] = str(e)
            failed += 1
            print(f"error: {path}: {e}", file=sys.stderr)
            continue
        entry["faces"], faces, attention = classify(classifier, detector, gray, args)
        if not args.json:
            if not entry["faces"]:
                print(f"{path}: no face found")
            for r in entry["faces"]:
                print(f"{path}: face at {tuple(r['box'])}: {r['emotion']} {r['probabilities'][r['emotion']]:.2f}")
        stem = os.path.splitext(os.path.basename(path))[0]
        if args.annotate:
            image = cv2.imread(path, cv2.IMREAD_COLOR)
            image = image if image is not None else cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
            cv2.imwrite(os.path.join(args.annotate, f"{stem}.png"), draw(image, entry["faces"]))
        if attention is not None:
            for k, (face, weights) in enumerate(zip(faces, attention)):
                cv2.imwrite(os.path.join(args.explain, f"{stem}_face{k + 1}_attention.png"), attention_map(face, weights))
    if args.json:
        print(json.dumps(entries, indent=2))
    if not entries:
        raise cli.UserError(f"no image files in {', '.join(args.paths)}")
    return 1 if failed else 0


def predict_stream(classifier, detector, args):
    """Camera or video: boxes and emotions on every frame, shown in a window if OpenCV has one, else written out."""
    source = args.camera if args.camera is not None else args.video
    capture = cv2.VideoCapture(source)
    if not capture.isOpened():
        raise cli.UserError(f"cannot open {'camera ' + str(source) if args.camera is not None else source}")
    writer, window = None, True
    frame_no = 0
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            frame_no += 1
            results, _, _ = classify(classifier, detector, cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), args)
            draw(frame, results)
            if args.annotate:
                if writer is None:
                    out = os.path.join(args.annotate, "annotated.mp4")
                    writer = cv2.VideoWriter(out, cv2.VideoWriter_fourcc(*"mp4v"), capture.get(cv2.CAP_PROP_FPS) or 25,
                                             (frame.shape[1], frame.shape[0]))
                writer.write(frame)
            if window:
                try:
                    cv2.imshow("emotions (q quits)", frame)
                    if cv2.waitKey(1) & 0xFF == ord("q"):
                        break
                except cv2.error:  # a headless OpenCV build has no windows
                    window = False
                    if not args.annotate:
                        raise cli.UserError("this OpenCV has no display windows; pass --annotate OUT_DIR to save the video") from None
            print(f"frame {frame_no}: " + (", ".join(f"{r['emotion']} at {tuple(r['box'])}" for r in results) or "no face"))
    finally:
        capture.release()
        if writer is not None:
            writer.release()
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="*", metavar="PATH", help="image files or folders of them")
    who = parser.add_mutually_exclusive_group()
    who.add_argument("--model", default="acnn_alstm", help="model name, meaning checkpoints/NAME (default: %(default)s)")
    who.add_argument("--checkpoint", metavar="DIR", help="checkpoint folder written by train.py")
    parser.add_argument("--json", action="store_true", help="print a JSON list of {path, faces, error}")
    parser.add_argument("--annotate", metavar="OUT_DIR", help="write each image with boxes and emotions drawn")
    parser.add_argument("--no-detect", action="store_true", help="treat each whole image as one face")
    parser.add_argument("--largest", action="store_true", help="keep only the largest face of each image")
    parser.add_argument("--explain", metavar="OUT_DIR", help="save the local attention heat map of each face (ACNN-ALSTM)")
    stream = parser.add_mutually_exclusive_group()
    stream.add_argument("--camera", type=int, metavar="N", help="classify faces live from camera N")
    stream.add_argument("--video", metavar="FILE", help="classify faces in a video file")
    args = parser.parse_args()
    streaming = args.camera is not None or args.video
    if not args.paths and not streaming:
        parser.error("give at least one image file or folder, or --camera / --video")

    classifier = checkpoints.Classifier(checkpoints.resolve(args.checkpoint, args.model))
    if args.explain and "local_attention" not in classifier.tensors.end_points:
        raise cli.UserError(f"--explain needs a model with local attention; {classifier.name} has none (try --model acnn_alstm)")
    for out in (args.annotate, args.explain):
        if out:
            os.makedirs(out, exist_ok=True)
    detector = None if args.no_detect else FaceDetector()
    return (predict_stream if streaming else predict_photos)(classifier, detector, args)


if __name__ == "__main__":
    cli.run(main)
