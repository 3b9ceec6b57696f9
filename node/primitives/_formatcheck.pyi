"""Types of the C extension built from _formatcheck.c (optional: encoding.py has the same walk
in Python when it is not built)."""

def foreign_type(obj: object, /) -> str | None:
    """None, or the name of the first value in ``obj`` that is not int, bytes, str or a list."""

def exceeded_depth(data: bytes, max_values: tuple[int, ...], /) -> int | None:
    """None, or the first depth at which ``data`` holds more values than ``max_values`` allows;
    ValueError if ``data`` is not one msgpack value of the format."""
