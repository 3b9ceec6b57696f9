"""What aiohttp's parser refuses, answered as JSON (node/api/server.py), without a node."""

from __future__ import annotations

import pytest
from aiohttp.http_exceptions import BadHttpMessage, BadStatusLine, LineTooLong

from node.api.server import MAX_HEADER_FIELD, MAX_URL, parser_error


@pytest.mark.parametrize(
    "exc,status,code",
    [
        (LineTooLong(b"/aaa...", MAX_URL), 414, "uri-too-long"),
        (LineTooLong(b"X-Big...", MAX_HEADER_FIELD), 431, "headers-too-large"),
        (BadHttpMessage("Too many headers received"), 431, "headers-too-large"),
        (BadStatusLine("GARBAGE"), 400, "bad-request"),
        (BadHttpMessage("Duplicate 'Host' header found."), 400, "bad-request"),
        (None, 400, "bad-request"),
    ],
)
def test_parser_errors(exc, status, code):
    assert parser_error(exc)[:2] == (status, code)


def test_the_two_limits_differ():
    """LineTooLong tells the URL from a header only by its limit."""
    assert MAX_URL != MAX_HEADER_FIELD
