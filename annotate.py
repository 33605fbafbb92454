"""Annotate photo archives and hours of video into a Parquet dataset, on Ray.

The same as `ferkit annotate`: `python annotate.py --help` lists the options.  The options are parsed in
ferkit/commands/annotate.py, and the work is done by the library it calls.
"""
from ferkit import commands

if __name__ == "__main__":
    commands.script("annotate")
