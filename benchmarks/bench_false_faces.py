"""How YuNet's score threshold trades faces found against false faces on photos with no face.

    python benchmarks/bench_false_faces.py [--data data/fer2013.npz] [--faces 600] [--faceless 600] [--no-real]

Photos with a face: PublicTest faces pasted into synthetic photos (ferkit.roundtrip.face_photo:
upscaled to 150-250 px, rotated up to 15 degrees, on blurred noise), plus the two real photos
at hand (samples/astronaut.png and matplotlib's grace_hopper.jpg).  Photos with no face: 640x480
crops, at random scales, of what matplotlib ships that holds no face (two terrain models shaded
as relief, which look like craters and hills; an MRI slice; a photo of a package; a logo), blurred
noise like the pasted faces' backgrounds, and stripes and checkerboards; with --real (the default), two
in three faceless photos are instead crops of real photographs that scikit-image ships with no face in
them (a cat, coffee, coins, rocks, grass, bricks, the moon, the Hubble deep field, a rocket, a
motorcycle, a horse, a page of text, cells and a retina; pip install -r benchmarks/requirements.txt).
Each photo is searched
as YuNetDetector searches it (the coarse search, then the full-size one when that finds nothing)
and the table gives, for each threshold of each search, the share of faces found and the false
faces per 100 faceless photos: YuNet alone, then with FaceCheck's second look at detections under
its sure score (what detect() does), whose false faces are also given on the photos made from the
sources it never learnt from (check_sources() lists those it did), and the time one second look
takes.  PrivateTest is never read.
"""
import argparse
import os
import sys

import cv2
import numpy as np

from ferkit import data
from ferkit.detectors import FACE_CHECK, MIN_SCORE, FaceCheck, YuNetDetector
from ferkit.faces import crop_face
from ferkit.roundtrip import PHOTO, face_at, face_photo

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)


def relief(height):
    """A height map -> uint8 shaded relief (light from the north-west), as a photo of terrain looks."""
    dy, dx = np.gradient(height.astype(np.float64))
    shade = (dx - dy) / np.sqrt(1 + dx ** 2 + dy ** 2)
    return cv2.normalize(shade, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)


def faceless_sources():
    """Grayscale or BGR images with no face in them, from matplotlib's sample data and made here."""
    from matplotlib import cbook
    sources = []
    for name, key in (("jacksboro_fault_dem.npz", "elevation"), ("topobathy.npz", "topo")):
        with cbook.get_sample_data(name) as f:
            sources.append(relief(f[key]))
    with cbook.get_sample_data("s1045.ima.gz") as f:
        sources.append(cv2.normalize(np.frombuffer(f.read(), "<i2").reshape(256, 256), None, 0, 255,
                                     cv2.NORM_MINMAX).astype(np.uint8))
    for name in ("Minduka_Present_Blue_Pack.png", "logo2.png"):
        sources.append(cv2.imread(cbook.get_sample_data(name, asfileobj=False)))
    ys, xs = np.mgrid[0:480, 0:640]
    sources += [((xs // 40 + ys // 40) % 2 * 255).astype(np.uint8), ((np.sin(xs / 9.0) + 1) * 127).astype(np.uint8)]
    return sources


# scikit-image's bundled photographs without a human face (astronaut, camera and the LFW subset have
# faces; the GIF is a film still): animals, food, astronomy, textures, objects, text, micrographs.
REAL_FACELESS = ("brick.png", "chelsea.png", "coffee.png", "coins.png", "grass.png", "gravel.png",
                 "hubble_deep_field.jpg", "moon.png", "rocket.jpg", "motorcycle_left.png", "clock_motion.png",
                 "page.png", "text.png", "retina.jpg", "ihc.png", "cell.png", "horse.png", "microaneurysms.png")


def real_faceless_sources():
    """scikit-image's real photographs with no face, as BGR or gray arrays."""
    try:
        import skimage
    except ImportError:
        sys.exit("--real needs scikit-image: pip install -r benchmarks/requirements.txt (or pass --no-real)")
    folder = os.path.join(os.path.dirname(skimage.__file__), "data")
    return [cv2.imread(os.path.join(folder, name), cv2.IMREAD_COLOR) for name in REAL_FACELESS]


def check_sources():
    """Every other faceless source (made here, then scikit-image's): all that tools/train_face_check.py
    learns from.  The others are never seen by FaceCheck, and the table counts their false faces apart."""
    return (faceless_sources() + real_faceless_sources())[0::2]


def faceless_photo(sources, rng):
    """A 640x480 BGR crop of a random source at a random scale (or blurred noise), randomly lit
    -> (photo, the source's index in sources, None for noise)."""
    kind = rng.integers(len(sources) + 1)
    if kind == len(sources):
        noise = rng.integers(0, 256, PHOTO, dtype=np.uint8)
        gray = cv2.normalize(cv2.GaussianBlur(noise, (0, 0), rng.uniform(3, 20)), None, 30, 220, cv2.NORM_MINMAX)
        return cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR), None
    image = sources[kind]
    image = image if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    scale = max(PHOTO[0] / image.shape[0], PHOTO[1] / image.shape[1]) * rng.uniform(1.0, 3.0)
    big = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
    y, x = rng.integers(big.shape[0] - PHOTO[0] + 1), rng.integers(big.shape[1] - PHOTO[1] + 1)
    crop = big[y:y + PHOTO[0], x:x + PHOTO[1]].astype(np.float32)
    return np.clip(crop * rng.uniform(0.6, 1.3) + rng.uniform(-30, 30), 0, 255).astype(np.uint8), int(kind)


def searches(detector, photo):
    """Both of YuNetDetector's searches of a photo, at a low threshold: (coarse, full) lists of Detection."""
    coarse, full = detector.scales(photo.shape)
    return detector._search(photo, coarse), (detector._search(photo, full) if full is not None else [])


def found_at(pair, coarse_t, full_t, passed=None):
    """What the detector returns with these thresholds: the coarse search's faces, else the full one's.
    passed: with FaceCheck, the ids of the detections that pass its look or need none (sure ones)."""
    keep = lambda d, t: d.score >= t and (passed is None or id(d) in passed)
    coarse, full = pair
    return [d for d in coarse if keep(d, coarse_t)] or [d for d in full if keep(d, full_t)]


def passing(check, photo, pair):
    """The ids of the detections in both searches that FaceCheck keeps (sure, or passing its look)."""
    return {id(d) for d in check.keep(photo, [d for search in pair for d in search])}


def look_ms(check, photo, runs=300):
    """Median milliseconds of one second look: the sample photo's face aligned (crop_face) and judged."""
    import time
    face = YuNetDetector(check=False).detect(photo)[0]
    gray = cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY)
    times = []
    for _ in range(runs + 20):  # the first 20 warm the caches, and are not counted
        start = time.perf_counter()
        check.passes([crop_face(gray, face.box, face.landmarks)], [0.6])
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times[20:]))


def checked_rows(check, with_face, faceless, unseen, real):
    """The table's FaceCheck rows: YuNet at 0.5 (both searches) with the second look, as detect() runs."""
    print(f"\nwith FaceCheck (threshold {check.threshold:.2f}) on detections under {check.sure:.2f}; false faces "
          "also on the faceless photos from sources it never learnt from")
    print(f"{'coarse':>7} {'full':>5} {'faces found':>12} {'false per 100':>14} {'unseen sources':>15}  real photos")
    for t in (MIN_SCORE,):
        hits = np.mean([face_at(found_at(p, t, t, ok), c) is not None for p, c, ok in with_face])
        false = np.array([len(found_at(p, t, t, ok)) for p, ok in faceless])
        real_found = sum(bool(found_at(p, t, t, ok)) for p, ok in real)
        print(f"{t:7.1f} {t:5.1f} {hits:12.2%} {100 * false.mean():14.2f} {100 * false[unseen].mean():15.2f}  "
              f"{real_found} of {len(real)}  ({unseen.sum()} unseen photos)")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="data/fer2013.npz")
    parser.add_argument("--faces", type=int, default=600)
    parser.add_argument("--faceless", type=int, default=600)
    parser.add_argument("--real", action=argparse.BooleanOptionalAction, default=True,
                        help="two in three faceless photos from scikit-image's real photographs (default: on)")
    args = parser.parse_args()
    from matplotlib import cbook
    detector = YuNetDetector(score_threshold=0.3, check=False)  # both searches' detections, unchecked
    check = FaceCheck() if os.path.exists(FACE_CHECK) else None
    rng = np.random.default_rng(0)
    faces, _ = data.load(args.data, splits=("PublicTest",)).splits["PublicTest"]
    with_face = []
    for i in rng.choice(len(faces), min(args.faces, len(faces)), replace=False):
        photo, centre = face_photo(faces[i, :, :, 0], rng)
        pair = searches(detector, photo)
        with_face.append((pair, centre, check and passing(check, photo, pair)))
    real = [cv2.imread(os.path.join(ROOT, "samples", "astronaut.png")),
            cv2.imread(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))]
    real = [(searches(detector, r), r) for r in real]
    real = [(pair, check and passing(check, r, pair)) for pair, r in real]
    sources, real_sources = faceless_sources(), real_faceless_sources() if args.real else None
    faceless, unseen = [], []
    for k in range(args.faceless):
        is_real = bool(real_sources) and k % 3 != 0
        photo, index = faceless_photo(real_sources if is_real else sources, rng)
        pair = searches(detector, photo)
        faceless.append((pair, check and passing(check, photo, pair)))
        # check_sources() takes every other of sources + real_sources; noise is in both halves
        unseen.append(index is not None and (index + (len(sources) if is_real else 0)) % 2 == 1)
    unseen = np.array(unseen)
    print(f"{len(with_face)} photos with a pasted PublicTest face, {len(faceless)} photos with no face"
          f"{' (two in three real photographs)' if args.real else ''}; "
          "found = the pasted face among the detections; false = detections on faceless photos")
    print(f"{'coarse':>7} {'full':>5} {'faces found':>12} {'false per 100':>14} {'photos with one':>16}  real photos")
    for coarse_t in THRESHOLDS:
        for full_t in THRESHOLDS:
            if full_t < coarse_t:
                continue
            hits = np.mean([face_at(found_at(p, coarse_t, full_t), c) is not None for p, c, _ in with_face])
            false = [len(found_at(p, coarse_t, full_t)) for p, _ in faceless]
            real_found = sum(bool(found_at(p, coarse_t, full_t)) for p, _ in real)
            print(f"{coarse_t:7.1f} {full_t:5.1f} {hits:12.1%} {100 * np.mean(false):14.1f} "
                  f"{np.mean(np.array(false) > 0):16.1%}  {real_found} of {len(real)}")
    if check:
        checked_rows(check, with_face, faceless, unseen, real)
        print(f"one second look (align and judge a face): median {look_ms(check, cv2.imread(os.path.join(ROOT, 'samples', 'astronaut.png'))):.2f} ms of 300")
    return 0


if __name__ == "__main__":
    sys.exit(main())
