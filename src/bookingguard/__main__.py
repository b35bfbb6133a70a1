"""``python -m bookingguard``."""

from bookingguard.cli import main

main()
