"""Shared code of the FER toolkit: data constants, the face transform, data
loading, checkpoints and command-line helpers.  Scripts at the top level
(preprocess, train, evaluate, predict) are thin layers over this package."""
