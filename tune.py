"""Sweep training recipes on Ray Tune: many runs at once, the trailing ones stopped early.

The same as `ferkit tune`: `python tune.py --help` lists the options.  The options are parsed in
ferkit/commands/tune.py, and the work is done by the library it calls (ferkit/sweep.py).
"""
from ferkit import commands

if __name__ == "__main__":
    commands.script("tune")
