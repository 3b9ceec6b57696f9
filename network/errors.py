"""Errors of the peer-to-peer layer, each with a short stable ``code``.

The codes appear in logs, in the ban list and in tests; they never change
meaning.  The network layer knows nothing about blocks or transactions, so a
handler registered by ``node/`` that finds a peer's message invalid raises
:class:`Misbehaviour` to have that peer punished.
"""

from __future__ import annotations


class NetworkError(Exception):
    """Base of every error the network layer raises on purpose."""

    code: str = "network-error"

    def __init__(self, code: str | None = None, message: str = "") -> None:
        if code is not None:
            self.code = code
        self.message = message or self.code
        super().__init__(f"{self.code}: {message}" if message else self.code)


class FrameError(NetworkError):
    """The byte stream does not carry a valid frame; the stream is unusable.

    Codes: ``bad-magic``, ``oversized-frame``, ``bad-checksum``.
    """

    code = "bad-frame"


class MessageError(NetworkError):
    """A frame's payload is not a well-formed message.

    Codes: ``bad-message`` for the envelope (undecodable payload, wrong shape,
    bad type name), ``bad-<type>`` for a network-layer message whose body has
    the wrong shape (``bad-version``, ``bad-ping``, ``bad-addr``...).
    """

    code = "bad-message"


class Misbehaviour(NetworkError):
    """Proof that a peer broke the protocol; raised to have it punished.

    ``score`` is added to the peer's misbehaviour score; at 100 or more the
    peer is disconnected and its host banned.  A handler registered by
    ``node/`` raises ``Misbehaviour(100, "bad-blk-pow", "...")`` for a message
    no honest peer would send.
    """

    code = "misbehaving"

    def __init__(self, score: int, code: str, message: str = "") -> None:
        if score < 0:
            raise ValueError("misbehaviour score must be non-negative")
        self.score = score
        super().__init__(code, message)
