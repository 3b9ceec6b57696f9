"""Types of the C extension built from _formatcheck.c (optional: encoding.py has the same walk
in Python when it is not built)."""

def foreign_type(obj: object, /) -> str | None:
    """None, or the name of the first value in ``obj`` that is not int, bytes, str or a list."""
