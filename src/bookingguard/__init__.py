"""bookingguard: keeps appointment booking by voice agents consistent (no phantom bookings)."""

from bookingguard.settings import Settings

__all__ = ["Settings"]
