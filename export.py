"""Export a trained model as a .tflite file or a SavedModel folder.

The same as `ferkit export`: `python export.py --help` lists the options.  The options are parsed in
ferkit/commands/export.py, and the work is done by the library it calls.
"""
from ferkit import commands

if __name__ == "__main__":
    commands.script("export")
