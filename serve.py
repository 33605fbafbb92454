"""Serve the models over HTTP: a JSON API and a web page.

The same as `ferkit serve`: `python serve.py --help` lists the options.  The options are parsed in
ferkit/commands/serve.py, and the work is done by the library it calls.
"""
from ferkit import commands

if __name__ == "__main__":
    commands.script("serve")
