"""ferkit: the FER toolkit's shared code (data constants, the face transform, data loading,
face detection and alignment, checkpoints, command-line helpers) and its Python API.

    from ferkit import Recognizer
    faces = Recognizer().recognize("photo.jpg")

The top-level scripts (preprocess, train, evaluate, predict) are thin layers over
this package.  Named ferkit, not fer, so that it does not shadow (or get shadowed
by) the `fer` package on PyPI.
"""

# The model predict.py and Recognizer use unless told otherwise: the ACNN-ALSTM trained on FER+'s
# votes, by far the best on photos against FER+'s cleaner labels (README, "Faces in photos").
DEFAULT_MODEL = "acnn_alstm_ferplus"


def __getattr__(name):
    # Recognizer imports TensorFlow (seconds); load it only when asked for, so that
    # `import ferkit.faces` (preprocess.py) stays light.
    if name == "Recognizer":
        from ferkit.recognizer import Recognizer
        return Recognizer
    if name == "PhotoError":  # what Recognizer.recognize raises for an unusable image, naming it
        from ferkit.photos import PhotoError
        return PhotoError
    if name == "FerkitError":  # the base of every error the toolkit raises: catch this one
        from ferkit.errors import FerkitError
        return FerkitError
    raise AttributeError(f"module 'ferkit' has no attribute {name!r}")
