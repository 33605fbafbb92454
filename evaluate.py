"""Accuracy reports of trained models on a FER-2013 split.

The same as `ferkit evaluate`: `python evaluate.py --help` lists the options.  The options are parsed in
ferkit/commands/evaluate.py, and the work is done by the library it calls.
"""
from ferkit import commands

if __name__ == "__main__":
    commands.script("evaluate")
