"""The ``bookingguard`` command line."""

from bookingguard.cli.app import app, main

__all__ = ["app", "main"]
