"""The emotions of the faces in photos, a video or a camera.

The same as `ferkit predict`: `python predict.py --help` lists the options.  The options are parsed in
ferkit/commands/predict.py, and the work is done by the library it calls.
"""
from ferkit import commands

if __name__ == "__main__":
    commands.script("predict")
