"""Version 1 of the operator API (``/api/v1``)."""
