"""Where FER-2013 has its faces: the landmark template that predict.py aligns photos onto.

    python tools/derive_template.py [--data data/fer2013.npz] [--faces 4000] [--seed 0]

FER-2013's faces were registered before they were cropped to 48x48: eyes,
nose and mouth are at about the same place in every image.  This script
measures that place.  It upscales randomly chosen Training faces 4x (48 ->
192 px), sets each in a 96-px mid-grey border (a face in a photo has
surroundings), runs YuNet on it, and maps the five landmarks back to 48x48
pixel coordinates; the template is their median, with the two eyes and the
two mouth corners each put at their common height (so an aligned face has its
eyes level).  It also runs the Haar cascade on the same images and takes the
median box, which is how a Haar face (a box, no landmarks) is framed.

Writes ferkit/assets/fer2013_template.json (atomically) and prints it.
Only Training faces are used, never PublicTest or PrivateTest.
"""
import os

import cv2
import numpy as np
from tqdm import tqdm

from ferkit import cli, data, files
from ferkit.detectors import HaarDetector, YuNetDetector

OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "ferkit", "assets", "fer2013_template.json")
UPSCALE, BORDER, SCORE_THRESHOLD = 4, 96, 0.7


def main():
    parser = cli.ArgumentParser(__doc__)
    parser.add_argument("--data", default="data/fer2013.npz", help="preprocess cache or FER-2013 download (default: %(default)s)")
    parser.add_argument("--faces", type=int, default=4000, help="Training faces to measure (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    parser.add_argument("--out", default=OUT, help="(default: ferkit/assets/fer2013_template.json)")
    args = parser.parse_args()
    if args.faces < 1:
        raise cli.UserError(f"--faces must be at least 1, got {args.faces}")

    images, _ = data.load(args.data, splits=("Training",)).splits["Training"]
    chosen = np.random.default_rng(args.seed).choice(len(images), min(args.faces, len(images)), replace=False)
    # Search at full resolution: these faces are all 192 px.  Score threshold 0.7: the committed
    # template was derived with it, before predict.py's threshold was tuned down to 0.5.
    yunet = YuNetDetector(min_face=YuNetDetector.WINDOW, score_threshold=SCORE_THRESHOLD, check=False)
    haar = HaarDetector(min_face=HaarDetector.WINDOW)
    landmarks, boxes = [], []
    for i in tqdm(chosen, desc="faces", unit="face"):
        big = cv2.resize(images[i, :, :, 0], None, fx=UPSCALE, fy=UPSCALE, interpolation=cv2.INTER_CUBIC)
        photo = cv2.cvtColor(cv2.copyMakeBorder(big, *[BORDER] * 4, cv2.BORDER_CONSTANT, value=128), cv2.COLOR_GRAY2BGR)
        found = yunet.detect(photo)
        if found:
            # Pixel centres: 192-px pixel u is 48-px pixel (u + 0.5) / 4 - 0.5.
            landmarks.append((found[0].landmarks - BORDER + 0.5) / UPSCALE - 0.5)
        found = haar.detect(photo)
        if found:
            x, y, w, h = found[0].box
            boxes.append(((x - BORDER) / UPSCALE, (y - BORDER) / UPSCALE, w / UPSCALE, h / UPSCALE))
    if not landmarks or not boxes:
        raise cli.UserError(f"{args.data}: no face found in {len(chosen)} Training faces; is this FER-2013?")
    median = np.median(np.array(landmarks), axis=0)
    for a, b in ((0, 1), (3, 4)):  # eyes, mouth corners: level
        median[a, 1] = median[b, 1] = (median[a, 1] + median[b, 1]) / 2
    template = {
        "landmarks": np.round(median, 2).tolist(),
        "landmark_names": ["right eye", "left eye", "nose tip", "right mouth corner", "left mouth corner"],
        "haar_box": np.round(np.median(np.array(boxes), axis=0), 2).tolist(),
        "derived_from": {"split": "Training", "faces": len(chosen), "seed": args.seed, "yunet_found": len(landmarks),
                         "haar_found": len(boxes), "upscale": UPSCALE, "border": BORDER,
                         "yunet_score_threshold": SCORE_THRESHOLD,
                         "command": "python tools/derive_template.py" + (f" --faces {args.faces}" if args.faces != 4000 else "")},
    }
    files.write_json(args.out, template)
    print(f"YuNet found {len(landmarks)} of {len(chosen)} faces, Haar {len(boxes)}")
    for name, (x, y) in zip(template["landmark_names"], template["landmarks"]):
        print(f"  {name:>18}: ({x:5.2f}, {y:5.2f})")
    print(f"  Haar box (x, y, w, h): {template['haar_box']}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    cli.run(main)
