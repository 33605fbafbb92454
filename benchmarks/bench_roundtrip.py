"""Round-trip fidelity of the photo path: FER-2013 faces put into photos, found, aligned and classified again.

    python benchmarks/bench_roundtrip.py [--model acnn_alstm_ferplus] [--detector yunet] [--faces 3589] [--seed 0]
                                         [--labels fer2013|ferplus]

Each PublicTest face is upscaled to 150-250 px (bicubic), rotated by up to
+-15 degrees and pasted at a random place into a 640x480 photo with a smooth
random background.  The photo then goes through exactly what predict.py does
(ferkit.Recognizer: detect, align onto the FER-2013 template, classify).

Prints the detection rate (a face found whose box holds the pasted face's
centre) and the accuracy of the photo path against the same faces classified
directly (as predict.py --no-detect would); for comparison, also the accuracy
when the detector's box is squashed to 48x48 without alignment.  This is how
the framing is tuned without labelled real photos, so it runs on PublicTest
(never PrivateTest).  --labels ferplus scores against FER+'s majority labels,
on the PublicTest faces that have a clear one (a cache made with
preprocess.py --ferplus).
"""
import argparse
import time

from ferkit import cli, data
from ferkit.backends import DEFAULT_MODEL
from ferkit.recognizer import Recognizer
from ferkit.roundtrip import round_trip


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=DEFAULT_MODEL, help="(default: %(default)s, predict.py's)")
    parser.add_argument("--checkpoint", metavar="PATH", help="a checkpoint folder, .tflite file or SavedModel instead")
    parser.add_argument("--detector", default="yunet", choices=("yunet", "haar"), help="(default: %(default)s)")
    parser.add_argument("--data", default="data/fer2013.npz", help="preprocess cache or FER-2013 download (default: %(default)s)")
    parser.add_argument("--faces", type=int, default=0, help="use the first N PublicTest faces (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    parser.add_argument("--labels", default="fer2013", choices=("fer2013", "ferplus"), help="(default: %(default)s)")
    args = parser.parse_args()

    faces, labels = data.load(args.data, splits=("PublicTest",)).splits["PublicTest"]
    if args.labels == "ferplus":
        from ferkit import ferplus
        labels, clear = ferplus.majority(data.load_ferplus_votes(args.data, "PublicTest"))
        faces, labels = faces[clear], labels[clear]
    if args.faces > 0:
        faces, labels = faces[:args.faces], labels[:args.faces]
    recognizer = Recognizer(args.model, args.checkpoint, detector=args.detector)
    start = time.perf_counter()
    r = round_trip(recognizer, faces, labels, args.seed)
    print(f"{args.checkpoint or args.model} ({recognizer.classifier.backend}) with {args.detector}, {args.labels} labels: "
          f"{r['faces']} PublicTest faces in 640x480 photos "
          f"(150-250 px, rotated up to 15 degrees), {time.perf_counter() - start:.0f} s")
    print(f"  detection rate:                  {r['detection_rate']:.4f} ({r['found']} of {r['faces']})")
    print(f"  accuracy, faces found, direct:   {r['direct_accuracy_found']:.4f}")
    print(f"  accuracy, faces found, photo:    {r['photo_accuracy_found']:.4f} "
          f"({100 * (r['photo_accuracy_found'] - r['direct_accuracy_found']):+.2f} points: "
          f"{round(r['photo_accuracy_found'] * r['found'])} right against {round(r['direct_accuracy_found'] * r['found'])}; "
          f"same top-1 as direct on {r['agreement_found']:.4f})")
    print(f"  accuracy, box squashed to 48x48: {r['squashed_accuracy_found']:.4f} (no alignment, for comparison)")
    print(f"  accuracy, all faces (missed = wrong): photo {r['photo_accuracy_all']:.4f}, direct {r['direct_accuracy']:.4f}")


if __name__ == "__main__":
    cli.run(main)
