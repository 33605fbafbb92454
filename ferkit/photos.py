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
import re
import stat
import struct

# Decompression bombs: images over this many pixels are refused before they are decoded (a 1 MB
# PNG can claim 32000x32000, 3 GB decoded; a 6 KB TIFF a gigapixel).  Every format's declared size
# is read from its header here (header_size), since OpenCV's own limit below is read from the
# environment only when cv2 loads, which may be before this module (it is then 2^30 pixels).
# predict.py --max-pixels raises the limit.
MAX_PIXELS = 100_000_000
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_PIXELS))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from ferkit.cli import UserError, captured_stderr
from ferkit.errors import FerkitError  # noqa: F401 (predict.py imports captured_stderr from here)

# We report unreadable images ourselves, in one line each; OpenCV's own decoder warnings would double them.
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm", ".gif")
_MAGIC = {b"\xff\xd8\xff": "JPEG", b"\x89PNG": "PNG", b"BM": "BMP", b"RIFF": "WebP", b"II*\x00": "TIFF",
          b"MM\x00*": "TIFF", b"P5": "PGM", b"P6": "PPM", b"GIF8": "GIF"}
# What libjpeg and libpng print (straight to stderr, past OpenCV's logging) about a damaged file.
_DAMAGE = ("corrupt", "premature end", "error", "invalid", "bad ", "crc")


def image_kind(raw):
    """The image format an image file's first bytes announce ("JPEG", "PNG", ...), or None."""
    kind = next((k for magic, k in _MAGIC.items() if raw.startswith(magic)), None)
    return None if kind == "WebP" and raw[8:12] not in (b"WEBP", b"") else kind


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


def _jpeg_size(raw):
    """(width, height) of a JPEG's first start-of-frame segment, its markers walked from the start."""
    pos = 2
    while pos + 9 <= len(raw):
        if raw[pos] != 0xFF:
            return None
        marker = raw[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
        elif 0xD0 <= marker <= 0xD7 or marker == 0x01:  # markers without a length
            pos += 2
        elif 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # a start-of-frame segment
            height, width = struct.unpack(">HH", raw[pos + 5:pos + 9])
            return width, height
        else:
            pos += 2 + int.from_bytes(raw[pos + 2:pos + 4], "big")
    return None


def _tiff_size(raw):
    """(width, height) that a TIFF's first image (the one decoders read) declares in its tags."""
    order = "<" if raw[:2] == b"II" else ">"
    (ifd,) = struct.unpack(order + "I", raw[4:8])
    (count,) = struct.unpack(order + "H", raw[ifd:ifd + 2])
    size = {}
    for entry in range(ifd + 2, ifd + 2 + 12 * count, 12):
        tag, kind = struct.unpack(order + "HH", raw[entry:entry + 4])
        if tag in (256, 257):  # ImageWidth, ImageLength: a SHORT or a LONG
            size[tag] = struct.unpack(order + ("H" if kind == 3 else "I"), raw[entry + 8:entry + (10 if kind == 3 else 12)])[0]
    return (size[256], size[257]) if len(size) == 2 else None


def _webp_size(raw):
    """(width, height) of a WebP: the canvas of an extended file, or the frame of a simple one."""
    if raw[8:12] != b"WEBP":
        return None
    chunk = raw[12:16]
    if chunk == b"VP8X":
        return 1 + int.from_bytes(raw[24:27], "little"), 1 + int.from_bytes(raw[27:30], "little")
    if chunk == b"VP8 " and raw[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", raw[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and raw[20] == 0x2F:
        bits = int.from_bytes(raw[21:25], "little")
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    return None


def _gif_size(raw):
    """(width, height) a GIF may need: its logical screen, or a larger frame declared inside it."""
    width, height = struct.unpack("<HH", raw[6:10])
    pos = 13 + (3 << ((raw[10] & 7) + 1) if raw[10] & 0x80 else 0)  # past the global colour table
    while pos < len(raw):
        block = raw[pos]
        if block == 0x2C:  # an image descriptor: left, top, width, height, flags
            w, h = struct.unpack("<HH", raw[pos + 5:pos + 9])
            width, height = max(width, w), max(height, h)
            pos += 10 + (3 << ((raw[pos + 9] & 7) + 1) if raw[pos + 9] & 0x80 else 0) + 1  # + LZW code size
        elif block == 0x21:  # an extension: label, then sub-blocks
            pos += 2
        elif block == 0x3B:  # trailer
            break
        else:
            return None
        while pos < len(raw) and raw[pos]:  # sub-blocks, each led by its length, up to a 0
            pos += 1 + raw[pos]
        pos += 1
    return width, height


def header_size(raw, kind):
    """(width, height) an image file's header declares, read without decoding, or None where the
    header is too short or damaged to say (read_image then refuses the file: every format's size is
    checked here, since OpenCV's own limit is fixed when cv2 loads, possibly before ours was set)."""
    try:
        if kind == "PNG":
            return struct.unpack(">II", raw[16:24])
        if kind == "GIF":
            return _gif_size(raw)
        if kind == "BMP":
            width, height = struct.unpack("<ii", raw[18:26])
            return abs(width), abs(height)
        if kind in ("PGM", "PPM"):
            fields = re.sub(rb"#[^\n]*", b" ", raw[2:1024]).split()  # comments may sit between the fields
            return int(fields[0]), int(fields[1])
        if kind == "JPEG":
            return _jpeg_size(raw)
        if kind == "TIFF":
            return _tiff_size(raw)
        if kind == "WebP":
            return _webp_size(raw)
    except (struct.error, ValueError, IndexError, KeyError):
        return None
    return None


class PhotoError(FerkitError):
    """An image that cannot be used; the message says why in a few words."""


class TooLarge(PhotoError):
    """An image over MAX_PIXELS (or a file over what such an image can take), refused before decoding."""


def max_bytes():
    """The most bytes an image under MAX_PIXELS can take: 8 a pixel (16-bit RGBA), plus 1 MB of headers."""
    return MAX_PIXELS * 8 + (1 << 20)


def _too_many_bytes():
    return (f"over {max_bytes() / 1e6:,.0f} MB, more than an image under the limit of {MAX_PIXELS:,} pixels can take "
            "(predict.py --max-pixels raises the limit)")


def read_image(path):
    """Image file -> uint8 BGR (H, W, 3), turned upright by its EXIF orientation tag.

    Accepts 8- or 16-bit, one-channel, BGR or BGRA images (alpha is dropped,
    16 bits are scaled to 8).  Raises PhotoError for a missing, empty,
    unreadable, truncated, corrupt or non-image file (TooLarge for one over the pixel limit).
    """
    try:
        # Looked at before it is opened: opening a FIFO for reading waits for a writer, for ever.
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise PhotoError("not a regular file (a device, pipe or socket); give an image file")
        with open(path, "rb") as f:
            info = os.fstat(f.fileno())
            if not stat.S_ISREG(info.st_mode):  # replaced between the two looks
                raise PhotoError("not a regular file (a device, pipe or socket); give an image file")
            if info.st_size > max_bytes():  # a sparse file of gigabytes is refused before any of it is read
                raise TooLarge(_too_many_bytes())
            raw = f.read(max_bytes() + 1)
    except OSError as e:
        raise PhotoError(f"cannot read file ({e.strerror or e})") from None
    return decode_image(raw)


def decode_image(raw):
    """An image file's bytes -> uint8 BGR (H, W, 3), upright; the checks of read_image, in memory."""
    if len(raw) > max_bytes():
        raise TooLarge(_too_many_bytes())
    if not raw:
        raise PhotoError("empty file")
    kind = image_kind(raw)
    if kind is None:
        raise PhotoError("not an image file (no JPEG, PNG, BMP, WebP, TIFF, PNM or GIF signature)")
    # Decoders fill a truncated JPEG with grey and only warn; check the end markers ourselves.
    if kind == "JPEG" and not _jpeg_complete(raw):
        raise PhotoError("truncated JPEG (no end-of-image marker); the file is incomplete")
    if kind == "PNG" and b"IEND" not in raw[-16:]:
        raise PhotoError("truncated PNG (no IEND chunk); the file is incomplete")
    size = header_size(raw, kind)
    if size is None:
        raise PhotoError(f"damaged {kind} header: the image's size cannot be read from it")
    if size[0] * size[1] > MAX_PIXELS:
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
