"""Every file the toolkit writes is written whole or not at all, through this module.

  with atomic_write(path, "w") as f: ...        a file object; path appears only once f is complete
  with atomic_path(path) as tmp: save(tmp)       for libraries that write by file name (savefig, VideoWriter)
  write_json(path, obj)                          indented JSON, atomically
  fig, ax = new_figure(figsize=(w, h))           plt.subplots on the file-only backend (no display needed)
  save_figure(fig, path)                         that figure as a 256-colour PNG, atomically, then closed
  compact_png(data) -> bytes                     a PNG's pixels as a 256-colour PNG (a third of the bytes)
  remove_stale_temporaries(folder)               what killed runs of ours left in folder
  with c_path(path) as name: cv2.VideoWriter(name) a name C libraries can take, whatever path's bytes
  with no_space_is_one_line(path): save(...)      a full disk inside a library's own writer, as our one line
  fault_point(name)                              the interruption tests' hook (FERKIT_KILL_AT)
  check_outputs(outputs, inputs, overwrite)      the one rule for what a command may write (below)
  written_by_us(path)                            whether an existing file carries our mark

The temporary is a hidden file in the destination's own folder (.ferkit-PID-XXXX.tmp, plus
the destination's extension, which some writers go by), so the final rename never crosses
file systems; it is flushed and fsynced before os.replace puts it in place, and the folder is
fsynced after, so a power loss leaves either the old file or the new one.  On any failure,
Ctrl-C included, the temporary is removed and the destination is as it was.  Its name is
ASCII whatever the destination's, so no C library sees a name it cannot encode.  A full disk
is a UserError naming the file.  Temporaries whose process is dead (kill -9) are removed the
next time anything of ours writes into that folder.

Every file and folder written here carries a mark (the extended attribute user.ferkit), so that
a later run can tell a file of ours, which it may replace, from one a user put there, which only
--overwrite replaces.  On a file system that keeps no extended attributes, no file can be told
apart, and every file counts as ours there.
"""
import contextlib
import errno
import json
import os
import re
import secrets
import shutil
import signal
import stat

from ferkit.cli import UserError

_TEMPORARY = re.compile(r"^\.ferkit-(\d+)-[A-Za-z0-9_]+\.tmp")


def fault_point(name):
    """Test hook for the interruption tests: FERKIT_KILL_AT=NAME:N[:INT] kills this process, as SIGKILL
    would at a random moment (or with :INT interrupts it, as Ctrl-C would), the N-th time it passes
    the point NAME.  Points: "write" (every file below, complete but not yet in place), "aside" (a
    folder being replaced, between its two renames) and train.py's save sequence (scoring, after_best, after_last, before_state, after_state)."""
    point, _, rest = os.environ.get("FERKIT_KILL_AT", "").partition(":")
    if point == name:
        count, _, how = rest.partition(":")
        fault_point.count = getattr(fault_point, "count", 0) + 1
        if fault_point.count == int(count or 1):
            if how == "INT":
                raise KeyboardInterrupt
            os.kill(os.getpid(), signal.SIGKILL)


@contextlib.contextmanager
def c_path(path):
    """A name for path (which need not exist yet; its folder must) that C libraries taking char*
    paths can open: OpenCV's video reader and writer crash (segfault) on names that are not valid
    UTF-8.  An ASCII path is its own name; otherwise, on Linux, /proc/self/fd/N/BASENAME through a
    descriptor of its folder held open for the block (or /proc/self/fd/N of an existing file
    whose own name is not ASCII).  Elsewhere the path as it is."""
    text = os.fsdecode(path)
    if text.isascii() or not os.path.isdir("/proc/self/fd"):
        yield text
        return
    folder, base = os.path.split(os.path.abspath(text))
    exists = os.path.exists(text)
    fd = os.open(text if exists and not base.isascii() else folder, os.O_RDONLY)
    try:
        yield f"/proc/self/fd/{fd}" + ("" if exists and not base.isascii() else f"/{base}")
    finally:
        os.close(fd)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


# A folder being replaced is first renamed to this, beside it, for the instant between two renames.
_ASIDE = re.compile(r"^\.ferkit-aside-(\d+)-(.+)$")


def remove_stale_temporaries(folder):
    """Remove the temporaries of dead processes of ours (files or folders) from folder, and settle
    the folders that a dead process had set aside while replacing them (replace_folder): one whose
    replacement never arrived is put back; one whose replacement is in place is removed."""
    try:
        names = os.listdir(folder or ".")
    except OSError:
        return
    for name in names:
        full = os.path.join(folder, name)
        match, aside = _TEMPORARY.match(name), _ASIDE.match(name)
        if match and int(match.group(1)) != os.getpid() and not _alive(int(match.group(1))):
            shutil.rmtree(full, ignore_errors=True) if os.path.isdir(full) else _remove(full)
        elif aside and int(aside.group(1)) != os.getpid() and not _alive(int(aside.group(1))):
            destination = os.path.join(folder, aside.group(2))
            if os.path.lexists(destination):  # the second rename happened: the set-aside copy is superseded
                shutil.rmtree(full, ignore_errors=True)
            else:  # killed between the renames: the old folder goes back, as if nothing had been started
                os.rename(full, destination)


_MARK = "user.ferkit"
# The installed package: the shipped models, the detector and the page.  No command writes there,
# except the release step (tools/ship_exports.py), which sets FERKIT_RELEASE for the models alone.
PACKAGE = os.path.dirname(os.path.abspath(__file__))
MODELS_PACKAGE = os.path.join(os.path.dirname(PACKAGE), "models")
RELEASE = "FERKIT_RELEASE"


def _mark(path):
    with contextlib.suppress(OSError):  # not every file system keeps extended attributes
        os.setxattr(path, _MARK, b"1")


def written_by_us(path):
    """Whether the existing file or folder at path was written by ferkit (it carries our mark), or lies
    on a file system that keeps no marks, where no file can be told apart."""
    try:
        os.getxattr(path, _MARK)
        return True
    except OSError as e:
        return e.errno in (errno.ENOTSUP, errno.EOPNOTSUPP)


def _inside(path, folder):
    return os.path.commonpath([path, folder]) == folder


def _relation(out, given):
    """How the real paths out and given overlap ('is', 'is inside', 'holds'), or None."""
    if out == given:
        return "is"
    if _inside(out, given):
        return "is inside"
    return "holds" if _inside(given, out) else None


def _shipped(real):
    if _inside(real, os.path.join(PACKAGE, "pretrained")) and os.environ.get(RELEASE) == "1":
        return False
    return _inside(real, PACKAGE) or _inside(real, MODELS_PACKAGE)


def check_outputs(outputs, inputs=(), overwrite=False):
    """The one rule for what a command may write; every command calls it before its work starts.

    outputs: [(flag, path, kind)], kind "file" or "folder" (folders may not exist yet);
    inputs: the paths (files or folders) that this run reads.
    Raises a one-line UserError naming both paths for an output that, with symlinks resolved:
      - is a device, FIFO or socket, or a folder where a file goes (or the reverse);
      - is an input, is inside an input folder, or is a folder that holds an input;
      - is, or is inside, the installed package (the shipped models, detector and page);
      - is the same path as another output of this run;
      - is an existing file that ferkit did not write (written_by_us), unless overwrite.
    """
    seen = []
    for flag, path, kind in outputs:
        if not path:
            continue
        remove_stale_temporaries(os.path.dirname(os.path.abspath(path)))  # settles what a killed run set aside
        real = os.path.realpath(path)
        try:
            mode = os.stat(real).st_mode
        except OSError:
            mode = None
        if mode is not None and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            raise UserError(f"{flag} {path}: is a device, pipe or socket, not a {kind}; nothing was written. "
                            f"Give a {kind} to write")
        if mode is not None and stat.S_ISDIR(mode) != (kind == "folder"):
            raise UserError(f"{flag} {path}: is a {'folder' if stat.S_ISDIR(mode) else 'file'}, not a {kind}; give a "
                            f"{kind} to write{' such as out.csv' if kind == 'file' else ' into'}")
        for given in inputs:
            if given and os.path.lexists(given) and (where := _relation(real, os.path.realpath(given))):
                raise UserError(f"{flag} {path}: {where} the input {given}; writing there could destroy or mix "
                                "with what this run reads. Choose an output apart from its inputs")
        if _shipped(real):
            raise UserError(f"{flag} {path}: is inside the installed package ({PACKAGE}), whose shipped models "
                            "only the release step writes; choose an output elsewhere, such as runs/NAME")
        for other_flag, other_path, other in seen:
            if other == real:
                raise UserError(f"{flag} {path}: is the same path as {other_flag} {other_path}; one would "
                                "overwrite the other. Give each output its own name")
        if kind == "file" and mode is not None and not overwrite and not written_by_us(real):
            raise UserError(f"{flag} {path}: exists, and ferkit did not write it; nothing was changed. Pass "
                            "--overwrite to replace it, or choose another name")
        seen.append((flag, path, real))


def _remove(path):
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)


def _fsync_folder(folder):
    with contextlib.suppress(OSError):  # not every file system lets a folder be opened
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _disk_full(path, error):
    return UserError(f"{path}: no space left on the device ({error.strerror}); nothing was written there. "
                     "Free some space, or write somewhere else, and run again")


def _is_disk_full(error):
    return isinstance(error, OSError) and error.errno == errno.ENOSPC or "No space left on device" in str(error)


@contextlib.contextmanager
def no_space_is_one_line(path, left="nothing was written there"):
    """Turn a full disk met inside the block by a library that writes by itself (TensorFlow's savers
    and event writer raise their own error types, with the OS's message inside) into the one-line
    UserError of ours, saying what is `left`.  The library's background threads that meet it die
    quietly meanwhile: the block's own error says it once."""
    import threading
    earlier = threading.excepthook

    def quiet(hook):
        if not _is_disk_full(hook.exc_value):
            earlier(hook)
    threading.excepthook = quiet
    try:
        yield
    except UserError:
        raise
    except Exception as e:
        if _is_disk_full(e):
            raise UserError(f"{path}: no space left on the device; {left}. Free some space, or write somewhere "
                            "else, and run again") from None
        raise
    finally:
        threading.excepthook = earlier


def temporary_name(path):
    """A new name beside path for a temporary of this process (nothing is created there);
    the stale temporaries of dead processes in that folder are removed first."""
    folder = os.path.dirname(os.path.abspath(path))
    remove_stale_temporaries(folder)
    return os.path.join(folder, f".ferkit-{os.getpid()}-{secrets.token_hex(4)}.tmp{os.path.splitext(path)[1]}")


def replace_folder(new, path):
    """Put the finished folder `new` in place as path, replacing what is there: a folder there is
    renamed aside first (.ferkit-aside-PID-NAME) and removed last, so path never holds a mixture.
    Killed between the two renames, the next run of ours in that folder puts the old one back
    (remove_stale_temporaries), so path is the old folder or the new one at every instant after."""
    if os.path.isdir(path) and not os.path.islink(path):
        folder, base = os.path.split(os.path.abspath(path))
        remove_stale_temporaries(folder)
        old = os.path.join(folder, f".ferkit-aside-{os.getpid()}-{base}")
        os.rename(path, old)
        fault_point("aside")
        os.rename(new, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(new, path)
    _fsync_folder(os.path.dirname(os.path.abspath(path)))


@contextlib.contextmanager
def atomic_path(path, directory=False, exclusive=False):
    """A temporary name beside path to write to (a folder, if directory=True: its writer
    creates it); put in place as path when the block ends without an error, removed otherwise.
    exclusive=True: never replace what is at path by then (another run may have put it there
    meanwhile); a UserError instead, and the temporary goes."""
    tmp = temporary_name(path)
    try:
        if not directory:
            open(tmp, "xb").close()
        yield tmp
        fault_point("write")
        _mark(tmp)
        if exclusive and os.path.lexists(path):
            raise FileExistsError(errno.EEXIST, "exists", path)
        if directory:
            replace_folder(tmp, path)
        else:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            if exclusive:  # link fails if path exists, where a rename would replace it: no window between
                os.link(tmp, path)
                os.remove(tmp)
            else:
                os.replace(tmp, path)
            _fsync_folder(os.path.dirname(tmp))
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True) if os.path.isdir(tmp) else _remove(tmp)
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            raise _disk_full(path, e) from None
        if isinstance(e, FileExistsError) and exclusive:
            raise UserError(f"{path}: appeared while this run was writing it (another run?); it was kept, and "
                            "nothing was written there. Pass --overwrite to replace it, or choose another name") from None
        raise


@contextlib.contextmanager
def atomic_write(path, mode="w", exclusive=False, **open_args):
    """open(path, mode) that leaves path untouched unless the block completes (see the module docstring)."""
    with atomic_path(path, exclusive=exclusive) as tmp:
        with open(tmp, mode, **open_args) as f:
            yield f
            f.flush()


def write_json(path, obj):
    """Indented JSON, written atomically."""
    with atomic_write(path) as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


def compact_png(data):
    """PNG bytes -> the same picture as a 256-colour PNG.  Plots and confusion matrices have a few
    dozen distinct colours besides anti-aliasing, so they look the same at a third of the bytes
    (the shipped models' reports carry 40 of them)."""
    import io
    from PIL import Image
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        if image.mode == "P":
            return data
        opaque = image.mode in ("RGB", "L") or (image.mode == "RGBA" and image.getextrema()[3][0] == 255)
        rgb = image.convert("RGB") if opaque else image.convert("RGBA")
        method = Image.Quantize.MEDIANCUT if opaque else Image.Quantize.FASTOCTREE
        out = io.BytesIO()
        rgb.quantize(256, method=method).save(out, "PNG", optimize=True)
    return out.getvalue()


def new_figure(**subplots_args):
    """plt.subplots(**subplots_args) -> (figure, axes) on Agg, so plotting works without a display."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt.subplots(**subplots_args)


def save_figure(fig, path, dpi=100):
    """A Matplotlib figure written to path as a 256-colour PNG (compact_png), atomically; the
    figure is closed afterwards, written or not, so pyplot does not keep it alive."""
    import io
    import matplotlib.pyplot as plt
    try:
        raw = io.BytesIO()
        fig.savefig(raw, format="png", dpi=dpi)
        with atomic_write(path, "wb") as f:
            f.write(compact_png(raw.getvalue()))
    finally:
        plt.close(fig)
