"""Chain spec files (node/consensus/chainspec.py): parsing, validation with reason codes,
the hand-written TOML writer round-tripping, and genesis mining (node/chaincmd.py)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.chaincmd import mine_genesis
from node.consensus.chainspec import (
    REGTEST_LIKE_BITS,
    ChainSpecError,
    _string,
    format_spec,
    lifetime_subsidy,
    load_spec,
    parse_spec,
)
from node.consensus.params import REGTEST, check_genesis
from node.consensus.pow import bits_to_target
from node.mining.warm import NONCE_START
from node.primitives.crypto import SigningKey, encode_address
from node.primitives.tx import COIN, MAX_MONEY, TxOut


def base_params(**changes):
    """A valid, mined, regtest-like private network."""
    params = replace(
        REGTEST,
        name="acme",
        magic=bytes.fromhex("a1b2c3d4"),
        hrp="acme",
        default_port=19333,
        api_port=19332,
        halving_interval=2_500,
        from_spec=True,
        genesis_nonce=NONCE_START,
        **changes,
    )
    return mine_genesis(params, 1, lambda h, s: None)


@pytest.fixture(scope="module")
def spec_text() -> str:
    return format_spec(base_params())


def edit(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


def code_of(text: str) -> str:
    with pytest.raises(ChainSpecError) as info:
        parse_spec(text)
    return info.value.code


def test_a_written_spec_reads_back_to_the_same_network(spec_text):
    params = parse_spec(spec_text)
    assert params == base_params()
    assert format_spec(params) == spec_text
    assert check_genesis(params)


def test_the_network_id_commits_to_the_genesis(spec_text):
    """Two private chains of one name cannot replay each other's transactions."""
    a = parse_spec(spec_text)
    b = parse_spec(format_spec(base_params(genesis_message=b"another")))
    assert a.name == b.name and a.genesis_hash != b.genesis_hash
    assert a.network_id != b.network_id


def test_allocations_are_the_spendable_genesis_outputs():
    key = SigningKey.generate().address_hash
    params = base_params(genesis_allocations=(TxOut(3 * COIN, key), TxOut(1, key)))
    again = parse_spec(format_spec(params))
    assert again.genesis_allocations == params.genesis_allocations
    assert [o.amount for o in again.genesis.txs[0].outputs] == [3 * COIN, 1]


@pytest.mark.parametrize(
    ("old", "new", "code"),
    [
        ("coinbase-maturity =", "coinbase-maturty =", "spec-unknown-key"),
        ('name = "acme"\n', "", "spec-missing-key"),
        ("retarget = false", "retarget = 1", "spec-bad-type"),
        ("p2p-port = 19333", "p2p-port = true", "spec-bad-type"),
        ('name = "acme"', 'name = "regtest"', "spec-bad-name"),
        ('name = "acme"', 'name = "Acme Corp"', "spec-bad-name"),
        ('magic = "a1b2c3d4"', 'magic = "4f425254"', "spec-bad-magic"),  # regtest's
        ('magic = "a1b2c3d4"', 'magic = "ACME"', "spec-bad-magic"),
        ('address-prefix = "acme"', 'address-prefix = "robol"', "spec-bad-prefix"),
        ("api-port = 19332", "api-port = 19333", "spec-bad-port"),
        ("p2p-port = 19333", "p2p-port = 70000", "spec-bad-port"),
        ("bits = 0x207fffff", "bits = 0x20ffffff", "spec-bad-bits"),  # negative
        ("bits = 0x207fffff", "bits = 0x03000000", "spec-bad-bits"),  # zero
        ("bits = 0x207fffff", "bits = 0x2100ffff", "spec-bad-bits"),  # non-canonical
        ("pow-limit-bits = 0x207fffff", "pow-limit-bits = 0x1d00ffff", "spec-bad-bits"),
        ("block-interval = 600", "block-interval = 0", "spec-bad-value"),
        ("coinbase-maturity = 100", "coinbase-maturity = 0", "spec-bad-value"),
        ("seeds = []", 'seeds = ["no-port"]', "spec-bad-seed"),
        ("name =", "name = = ", "spec-bad-toml"),
    ],
)
def test_a_broken_rule_is_refused_with_its_code(spec_text, old, new, code):
    assert code_of(edit(spec_text, old, new)) == code


def test_a_genesis_nonce_that_misses_the_target_is_refused(spec_text):
    hard = edit(spec_text, "bits = 0x207fffff", "bits = 0x1d00ffff")
    hard = edit(hard, "pow-limit-bits = 0x207fffff", "pow-limit-bits = 0x1d00ffff")
    with pytest.raises(ChainSpecError) as info:
        parse_spec(hard)
    assert info.value.code == "spec-bad-genesis" and "obol-node chain new" in info.value.message


def test_allocations_are_checked(spec_text):
    key = SigningKey.generate().address_hash
    regtest_address = encode_address("robol", key)
    bad = spec_text + f'allocations = [{{ address = "{regtest_address}", amount = 5 }}]\n'
    assert code_of(bad) == "spec-bad-alloc"
    ours = encode_address("acme", key)
    zero = spec_text + f'allocations = [{{ address = "{ours}", amount = 0 }}]\n'
    assert code_of(zero) == "spec-bad-alloc"
    extra = spec_text + f'allocations = [{{ address = "{ours}", amount = 1, memo = "x" }}]\n'
    assert code_of(extra) == "spec-unknown-key"


def test_allocations_beyond_the_money_supply_are_refused(spec_text):
    issued = lifetime_subsidy(50 * COIN, 2_500)
    assert issued == 2_500 * sum((50 * COIN) >> n for n in range(64))
    params = base_params()
    ours = encode_address("acme", SigningKey.generate().address_hash)
    room = MAX_MONEY - issued
    # the genesis nonce no longer matches once allocations change it: check without pow
    fits = spec_text + f'allocations = [{{ address = "{ours}", amount = {room} }}]\n'
    assert parse_spec(fits, check_pow=False).genesis_allocations[0].amount == room
    over = spec_text + f'allocations = [{{ address = "{ours}", amount = {room + 1} }}]\n'
    with pytest.raises(ChainSpecError) as info:
        parse_spec(over, check_pow=False)
    assert info.value.code == "spec-over-supply"
    assert params.initial_subsidy == 50 * COIN


def test_an_unreadable_file_is_a_clear_error(tmp_path):
    with pytest.raises(ChainSpecError) as info:
        load_spec(tmp_path / "missing.toml")
    assert info.value.code == "spec-unreadable" and "missing.toml" in info.value.message


def test_a_real_target_is_mined_by_worker_processes_with_progress():
    """A target about 2^12 hashes away, searched in ranges of 256 by two processes."""
    calls: list[tuple[int, float]] = []
    params = replace(base_params(), genesis_bits=0x1F0FFFFF, pow_limit=bits_to_target(0x1F0FFFFF))
    mined = mine_genesis(params, 2, lambda h, s: calls.append((h, s)), chunk=256, interval=0.0)
    assert check_genesis(mined)
    assert calls and calls[-1][0] >= 256
    assert parse_spec(format_spec(mined)).genesis_hash == mined.genesis_hash


# TOML text the writer must escape: quotes, backslashes, control characters, non-ASCII
messages = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30).filter(
    lambda m: len(m.encode()) <= 100
)


@settings(max_examples=60, deadline=None)
@given(
    message=messages,
    interval=st.integers(1, 86_400),
    maturity=st.integers(1, 10_000),
    subsidy=st.integers(0, 50 * COIN),
    retarget=st.booleans(),
    seeds=st.lists(st.sampled_from(["a.example:1", "[::1]:9", "10.0.0.1:65535"]), max_size=3),
)
def test_any_valid_network_round_trips(message, interval, maturity, subsidy, retarget, seeds):
    params = replace(
        base_params(),
        genesis_message=message.encode(),
        target_spacing=interval,
        coinbase_maturity=maturity,
        initial_subsidy=subsidy,
        retarget=retarget,
        seeds=tuple(seeds),
    )
    text = format_spec(params)
    assert parse_spec(text, check_pow=False) == params
    assert format_spec(parse_spec(text, check_pow=False)) == text


def test_regtest_like_bits_are_the_easiest_target():
    assert bits_to_target(REGTEST_LIKE_BITS) == REGTEST.pow_limit


toml_values = st.one_of(
    st.integers(-(2**70), 2**70),
    st.booleans(),
    st.text(max_size=12),
    st.lists(st.one_of(st.integers(-5, 70_000), st.text(max_size=8)), max_size=3),
    st.dictionaries(st.sampled_from(["address", "amount", "x"]), st.integers(-1, 9), max_size=3),
)
top_keys = st.sampled_from(
    ["name", "magic", "address-prefix", "p2p-port", "api-port", "block-interval", "retarget",
     "asert-half-life", "initial-subsidy", "halving-interval", "coinbase-maturity",
     "max-future-block-time", "mine-on-demand", "sync-commits", "seeds", "genesis", "extra"]
)  # fmt: skip
genesis_keys = st.sampled_from(
    ["time", "bits", "pow-limit-bits", "nonce", "message", "allocations", "extra"]
)


def toml_literal(value) -> str:
    """``value`` as TOML (inline tables for dicts) by the spec's own string writer."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_literal(v) for v in value) + "]"
    return "{" + ", ".join(f'"{k}" = {toml_literal(v)}' for k, v in value.items()) + "}"


@settings(max_examples=150, deadline=None)
@given(
    top=st.dictionaries(top_keys, toml_values, max_size=3),
    genesis=st.dictionaries(genesis_keys, toml_values, max_size=3),
)
def test_any_broken_spec_is_refused_with_a_reason_never_a_crash(spec_text, top, genesis):
    """A valid spec with values replaced by any TOML value: a network or ChainSpecError."""
    head, _, tail = spec_text.partition("[genesis]\n")
    lines = [line for line in head.splitlines() if line.split(" = ")[0] not in top]
    lines += [f'"{k}" = {toml_literal(v)}' for k, v in top.items() if k != "genesis"]
    glines = [line for line in tail.splitlines() if line.split(" = ")[0] not in genesis]
    glines += [f'"{k}" = {toml_literal(v)}' for k, v in genesis.items()]
    text = "\n".join(lines) + "\n[genesis]\n" + "\n".join(glines) + "\n"
    if "genesis" in top:
        text = "\n".join(lines) + f"\ngenesis = {toml_literal(top['genesis'])}\n"
    try:
        parse_spec(text)
    except ChainSpecError as exc:
        assert exc.code.startswith("spec-") and exc.message
