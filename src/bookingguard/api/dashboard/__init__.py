"""The server-rendered dashboard at ``/`` (Jinja2, no front-end build)."""
