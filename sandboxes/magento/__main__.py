"""``python -m sandboxes.magento``: serve a generated store until stopped."""

from .server import main

main()
