"""Exception types that carry a stable reject code.

Every consensus or policy rule raises one of these with a short, stable
``code`` (the same strings Bitcoin Core uses where a counterpart exists).
Tests assert on the code; the API and logs report it.
"""

from __future__ import annotations


class ObolError(Exception):
    """Base of every error Obol raises on purpose."""

    code: str = "error"

    def __init__(self, code: str | None = None, message: str = "") -> None:
        if code is not None:
            self.code = code
        self.message = message or self.code
        super().__init__(f"{self.code}: {self.message}" if message else self.code)


class DecodeError(ObolError):
    """Bytes that are not the canonical encoding of the expected shape."""

    code = "bad-encoding"


class AddressError(ObolError):
    """An address that does not parse, or belongs to another network."""

    code = "bad-address"


class ValidationError(ObolError):
    """A consensus rule is broken: the object is invalid for every node."""

    code = "invalid"


class TxValidationError(ValidationError):
    """A transaction breaks a consensus rule."""


class BlockValidationError(ValidationError):
    """A block or header breaks a consensus rule."""


class MissingInputsError(TxValidationError):
    """A transaction spends an output that is not (or no longer) available.

    Not proof of misbehaviour: the spent output may come in a block or
    transaction the node has not seen yet.
    """

    code = "bad-txns-inputs-missingorspent"


class PolicyError(ObolError):
    """A transaction is valid but this node's mempool policy refuses it."""

    code = "policy"


class MempoolConflictError(PolicyError):
    """A transaction spends an output that a mempool transaction spends."""

    code = "txn-mempool-conflict"
