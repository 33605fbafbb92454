"""python -m ferkit MODE ...: the ferkit command."""
from ferkit.commands import main

main()
