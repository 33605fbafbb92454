"""Train a model on FER-2013's Training split, choosing checkpoints on PublicTest.

The same as `ferkit train`: `python train.py --help` lists the options.  The options are parsed in
ferkit/commands/train.py, and the work is done by the library it calls.
"""
from ferkit import commands

if __name__ == "__main__":
    commands.script("train")
