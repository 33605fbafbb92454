"""Turn FER-2013, as downloaded, into the .npz cache that training reads.

The same as `ferkit preprocess`: `python preprocess.py --help` lists the options.  The options are parsed in
ferkit/commands/preprocess.py, and the work is done by the library it calls.
"""
from ferkit import commands

if __name__ == "__main__":
    commands.script("preprocess")
