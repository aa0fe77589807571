"""``python -m sandboxes.deconetwork``: serve a generated site until stopped."""

from .server import main

main()
