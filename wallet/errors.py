"""Exceptions the wallet raises on purpose, each with a short, stable code.

``WalletError(code, message)`` is an ``ObolError``: callers (the CLI, the
API, tests) match on ``code`` and show ``message`` to the user.  Each code has
a subclass so that ``except`` clauses can be precise:

=====================  ======================================================
code                   meaning
=====================  ======================================================
``bad-mnemonic``       a recovery phrase with an unknown word, a wrong word
                       count or a failed checksum
``bad-path``           a BIP-32 derivation path that does not parse
``invalid-child-key``  BIP-32 derivation hit an invalid key (probability
                       below 2**-127; use the next index)
``unknown-network``    a network name other than main, testnet, regtest
``wrong-passphrase``   the keystore did not authenticate: wrong passphrase,
                       or the file was altered
``keystore-damaged``   the keystore file is not well-formed (truncated,
                       edited, not JSON, missing fields, bad hex ...)
``keystore-unsupported``  a keystore written by a newer or different program
``keystore-exists``    refusing to overwrite an existing keystore
``insufficient-funds`` the spendable outputs cannot pay amount plus fee
``max-fee-exceeded``   the fee of a send is above the cap (``--max-fee``)
``light-bad-header``   ``--light``: the node served a header that fails a
                       consensus check (its reason in the message)
``light-low-work``     ``--light``: the node's header chain has no more work
                       than the headers this wallet keeps
``light-wrong-chain``  ``--light``: the node's chain does not start at this
                       network's genesis
``light-bad-proof``    ``--light``: a transaction's merkle proof does not
                       lead to the header the wallet keeps at its height
``headers-damaged``    the kept headers file is not well-formed
=====================  ======================================================
"""

from __future__ import annotations

from node.primitives.errors import ObolError


class WalletError(ObolError):
    """Base of every error the wallet raises on purpose."""

    code = "wallet-error"


class BadMnemonicError(WalletError):
    """A recovery phrase that is not a valid BIP-39 English mnemonic."""

    code = "bad-mnemonic"


class BadPathError(WalletError):
    """A BIP-32 derivation path that does not parse."""

    code = "bad-path"


class InvalidChildKeyError(WalletError):
    """BIP-32 derivation produced an invalid key (astronomically unlikely)."""

    code = "invalid-child-key"


class UnknownNetworkError(WalletError):
    """A network name the wallet does not know."""

    code = "unknown-network"


class WrongPassphraseError(WalletError):
    """Authenticated decryption failed: wrong passphrase or an altered file."""

    code = "wrong-passphrase"


class KeystoreDamagedError(WalletError):
    """A keystore file that is not well-formed."""

    code = "keystore-damaged"


class KeystoreUnsupportedError(WalletError):
    """A keystore in a format version, KDF or cipher this program does not know."""

    code = "keystore-unsupported"


class KeystoreExistsError(WalletError):
    """Creating a keystore where a file already exists."""

    code = "keystore-exists"


class InsufficientFundsError(WalletError):
    """The spendable outputs cannot pay the amount plus the fee."""

    code = "insufficient-funds"


class FeeTooHighError(WalletError):
    """The fee a send would pay is above the wallet's cap (Bitcoin Core: ``-maxtxfee``)."""

    code = "max-fee-exceeded"


class LightError(WalletError):
    """``--light``: what the node served does not prove what it claims (the code says how)."""

    code = "light-bad-proof"
