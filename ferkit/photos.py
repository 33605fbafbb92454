"""Photos in: reading image files defensively, upright, and listing folders of them.

  bgr = read_image(path)            any 8/16-bit gray, BGR or BGRA file -> uint8 (H, W, 3) BGR, EXIF orientation
                                    applied; PhotoError if the file is bad (TooLarge if over MAX_PIXELS)
  bgr = decode_image(raw)           the same from the file's bytes, in memory (the HTTP service)
  gray = read_gray(path)            the same, as uint8 (H, W) grayscale
  bgr = as_bgr(array, rgb=False)    a NumPy image (gray, BGR, BGRA; RGB(A) with rgb=True; 8 or 16 bit) -> uint8 BGR
  items = list_images(paths)        files and folders -> [(path, name)], folders walked recursively; `name` is the
                                    file's path relative to the inputs' common folder, unique, for output files
"""
import os
import stat
import struct

# Decompression bombs: images over this many pixels are refused before they are decoded (a 1 MB
# PNG can claim 32000x32000, 3 GB decoded).  Our own header check gives the message; OpenCV's
# limit, read from the environment at its first decode, is the backstop for the formats we do
# not parse.  predict.py --max-pixels raises it.
MAX_PIXELS = 100_000_000
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_PIXELS))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from ferkit.cli import UserError, captured_stderr  # noqa: F401 (predict.py imports captured_stderr from here)

# We report unreadable images ourselves, in one line each; OpenCV's own decoder warnings would double them.
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm", ".gif")
_MAGIC = {b"\xff\xd8\xff": "JPEG", b"\x89PNG": "PNG", b"BM": "BMP", b"RIFF": "WebP", b"II*\x00": "TIFF",
          b"MM\x00*": "TIFF", b"P5": "PGM", b"P6": "PPM", b"GIF8": "GIF"}
# What libjpeg and libpng print (straight to stderr, past OpenCV's logging) about a damaged file.
_DAMAGE = ("corrupt", "premature end", "error", "invalid", "bad ", "crc")


def _jpeg_complete(raw):
    """Whether a JPEG's compressed data ends with its end-of-image marker: the segments are walked
    to the first scan, and the marker looked for after it (a thumbnail inside the Exif segment has an
    end marker of its own, and phones append data after the real one, so neither end of the file tells)."""
    pos = 2
    while pos + 4 <= len(raw):
        if raw[pos] != 0xFF:
            return False
        marker = raw[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
        elif marker == 0xDA:  # start of scan: compressed data follows
            return raw.find(b"\xff\xd9", pos) != -1
        elif 0xD0 <= marker <= 0xD7 or marker == 0x01:
            pos += 2
        else:
            pos += 2 + int.from_bytes(raw[pos + 2:pos + 4], "big")
    return False


def header_size(raw, kind):
    """(width, height) a PNG, JPEG, BMP, GIF or PNM file's header claims, or None for other kinds
    (OpenCV's own limit covers those) and headers too short to say."""
    try:
        if kind == "PNG":
            return struct.unpack(">II", raw[16:24])
        if kind == "GIF":
            return struct.unpack("<HH", raw[6:10])
        if kind == "BMP":
            width, height = struct.unpack("<ii", raw[18:26])
            return abs(width), abs(height)
        if kind in ("PGM", "PPM"):
            fields = raw[2:64].split()
            return int(fields[0]), int(fields[1])
        if kind == "JPEG":
            pos = 2
            while pos + 9 <= len(raw) and raw[pos] == 0xFF:
                marker = raw[pos + 1]
                if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # a start-of-frame segment
                    height, width = struct.unpack(">HH", raw[pos + 5:pos + 9])
                    return width, height
                pos += 2 + int.from_bytes(raw[pos + 2:pos + 4], "big")
    except (struct.error, ValueError, IndexError):
        return None
    return None


class PhotoError(Exception):
    """An image that cannot be used; the message says why in a few words."""


class TooLarge(PhotoError):
    """An image over MAX_PIXELS (or a file over what such an image can take), refused before decoding."""


def max_bytes():
    """The most bytes an image under MAX_PIXELS can take: 8 a pixel (16-bit RGBA), plus 1 MB of headers."""
    return MAX_PIXELS * 8 + (1 << 20)


def read_image(path):
    """Image file -> uint8 BGR (H, W, 3), turned upright by its EXIF orientation tag.

    Accepts 8- or 16-bit, one-channel, BGR or BGRA images (alpha is dropped,
    16 bits are scaled to 8).  Raises PhotoError for a missing, empty,
    unreadable, truncated, corrupt or non-image file (TooLarge for one over the pixel limit).
    """
    try:
        with open(path, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):  # /dev/zero, a pipe: would be read for ever
                raise PhotoError("not a regular file (a device, pipe or socket); give an image file")
            raw = f.read(max_bytes() + 1)
    except OSError as e:
        raise PhotoError(f"cannot read file ({e.strerror or e})") from None
    return decode_image(raw)


def decode_image(raw):
    """An image file's bytes -> uint8 BGR (H, W, 3), upright; the checks of read_image, in memory."""
    if len(raw) > max_bytes():
        raise TooLarge(f"over {max_bytes() / 1e6:,.0f} MB, more than an image under the limit of {MAX_PIXELS:,} "
                       "pixels can take (predict.py --max-pixels raises the limit)")
    if not raw:
        raise PhotoError("empty file")
    kind = next((k for magic, k in _MAGIC.items() if raw.startswith(magic)), None)
    if kind is None:
        raise PhotoError("not an image file (no JPEG, PNG, BMP, WebP, TIFF, PNM or GIF signature)")
    # Decoders fill a truncated JPEG with grey and only warn; check the end markers ourselves.
    if kind == "JPEG" and not _jpeg_complete(raw):
        raise PhotoError("truncated JPEG (no end-of-image marker); the file is incomplete")
    if kind == "PNG" and b"IEND" not in raw[-16:]:
        raise PhotoError("truncated PNG (no IEND chunk); the file is incomplete")
    size = header_size(raw, kind)
    if size and size[0] * size[1] > MAX_PIXELS:
        raise TooLarge(f"{size[0]}x{size[1]} pixels, over the limit of {MAX_PIXELS:,} (a decompression bomb, "
                       "or a very large photo: predict.py --max-pixels raises the limit)")
    # IMREAD_COLOR (unlike IMREAD_UNCHANGED) applies the EXIF orientation: a phone photo stored
    # sideways comes out upright, so boxes are in the upright image's coordinates.
    with captured_stderr() as messages:
        try:
            image = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH)
        except cv2.error:  # a header claiming an impossible size fails OpenCV's own checks
            image = None
    # Lines of OpenCV's own log ("[ERROR:0@...] global ...") carry nothing a user can act on.
    damage = next((m.strip() for m in messages if not m.startswith("[") and any(d in m.lower() for d in _DAMAGE)), None)
    if image is None or image.size == 0 or damage:
        raise PhotoError(f"corrupt {kind} image ({damage or 'the decoder could not read it'})")
    return as_bgr(image)


def read_gray(path):
    """Image file -> uint8 grayscale (H, W); see read_image."""
    return cv2.cvtColor(read_image(path), cv2.COLOR_BGR2GRAY)


def as_bgr(image, rgb=False):
    """NumPy image -> uint8 BGR (H, W, 3).

    image: (H, W) or (H, W, 1) gray, (H, W, 3) BGR, (H, W, 4) BGRA; RGB/RGBA when rgb=True.
    uint8 is kept, uint16 scaled to 8 bits, float and other types stretched to 0..255.
    """
    image = np.asarray(image)
    if image.dtype.kind not in "biuf":
        raise PhotoError(f"not a numeric image array (dtype {image.dtype}); pass a path, or a uint8 or uint16 "
                         "NumPy image")
    if image.dtype.kind == "f" and not np.isfinite(image).all():
        raise PhotoError("the image array holds NaN or infinite values; pass finite pixel values")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)) or min(image.shape[:2]) == 0:
        raise PhotoError(f"not an image array: shape {image.shape} (expected (H, W), (H, W, 3) or (H, W, 4))")
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        image = cv2.normalize(image.astype(np.float32), None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_RGBA2BGR if rgb else cv2.COLOR_BGRA2BGR)
    return cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if rgb else np.ascontiguousarray(image)


def _walk(folder, extensions=IMAGE_EXTENSIONS):
    """Image files (or others, by extension) under folder, recursively, sorted, hidden files and folders skipped."""
    def unreadable(error):  # os.walk skips folders it cannot list, silently, unless told otherwise
        raise UserError(f"{error.filename}: cannot list the folder ({error.strerror}); check its permissions, "
                        "or leave it out")
    for root, dirs, files in os.walk(folder, onerror=unreadable):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith(".") and name.lower().endswith(extensions):
                yield os.path.join(root, name)


def list_images(paths, extensions=IMAGE_EXTENSIONS):
    """Files and folders -> [(path, name)] in order: a folder contributes its image files (or files with
    these extensions), recursively and sorted (hidden ones skipped); a file is kept as given, whatever
    its extension.

    `name` is the path relative to the common folder of all inputs (a folder given alone is its own
    root), so that output files mirror the input tree and two inputs never share a name.
    """
    paths = [os.fspath(p) for p in paths]
    files = []
    for p in paths:
        files += sorted(_walk(p, extensions)) if os.path.isdir(p) else [p]
    roots = [os.path.abspath(p) if os.path.isdir(p) else os.path.dirname(os.path.abspath(p)) for p in paths]
    base = os.path.commonpath(roots) if roots else ""
    items, seen = [], set()
    for f in files:
        name = os.path.relpath(os.path.abspath(f), base)
        if name in seen:  # the same file given twice
            continue
        seen.add(name)
        items.append((f, name))
    return items
