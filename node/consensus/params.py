"""Network parameters: ``main``, ``testnet`` and ``regtest``.

Every consensus constant that differs between networks lives here, in one
frozen object per network, each field commented with its Bitcoin name where
Bitcoin has one.  Code receives a ``NetworkParams`` and never reads a global.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from node.consensus.pow import bits_to_target, hash_meets_target
from node.primitives.block import Block, BlockHeader, merkle_root
from node.primitives.crypto import tagged_hash
from node.primitives.tx import COIN, TxOut, make_coinbase

MEDIAN_TIME_SPAN = 11  # blocks in the median-time-past window (Bitcoin: same)
BLOCK_VERSION = 1  # header version this software writes
TX_VERSION = 1  # transaction version this software writes
MAX_HALVINGS = 64  # after this many halvings the subsidy is zero


@dataclass(frozen=True)
class NetworkParams:
    name: str  # "main", "testnet" or "regtest"
    magic: bytes  # 4 bytes that open every P2P frame (Bitcoin: pchMessageStart)
    default_port: int  # P2P TCP port (Bitcoin: nDefaultPort)
    api_port: int  # HTTP API port, bound to 127.0.0.1 (Bitcoin: rpcport)
    hrp: str  # bech32m prefix of addresses (Bitcoin: bech32_hrp)
    pow_limit: int  # easiest target a block may have (Bitcoin: powLimit)
    genesis_bits: int  # compact target of the genesis block and of block 1
    retarget: bool  # False: every block has genesis_bits (Bitcoin: fPowNoRetargeting)
    target_spacing: int  # seconds between blocks that ASERT aims for (Bitcoin: nPowTargetSpacing)
    asert_half_life: int  # seconds off schedule that halve/double the target (BCH: nASERTHalfLife)
    coinbase_maturity: int  # depth a coinbase output needs to be spent (Bitcoin: COINBASE_MATURITY)
    initial_subsidy: int  # base units a block creates at first (Bitcoin: 50 * COIN)
    halving_interval: int  # blocks between subsidy halvings (Bitcoin: nSubsidyHalvingInterval)
    # seconds a block's timestamp may lead the local clock (Bitcoin: MAX_FUTURE_BLOCK_TIME)
    max_future_block_time: int
    mine_on_demand: bool  # blocks are mined at once on request (Bitcoin: regtest's generate)
    # each LMDB commit waits for the disk (fdatasync); False (regtest) leaves the
    # pages to the OS's writeback and syncs at close: a process crash still loses
    # nothing, an OS crash may (docs/design.md, "Storage")
    sync_commits: bool
    genesis_timestamp: int  # unix seconds of the genesis header
    genesis_nonce: int  # nonce that gives the genesis header its proof of work
    genesis_message: bytes  # miner data of the genesis coinbase
    # work a header chain needs before it is stored, whatever our tip (Bitcoin:
    # nMinimumChainWork); 0 until a network has a history worth pinning in a release
    min_chain_work: int = 0
    # outputs of the genesis coinbase that enter the UTXO set (a chain spec's
    # allocations, docs/protocol.md §12.1); empty: one unspendable output of
    # initial_subsidy, as main, testnet and regtest have
    genesis_allocations: tuple[TxOut, ...] = ()
    seeds: tuple[str, ...] = ()  # "HOST:PORT" nodes to dial at start (Bitcoin: vSeeds)
    # defined by a chain spec file: network_id commits to the genesis hash too, so
    # two private chains that share a name still cannot replay each other's transactions
    from_spec: bool = False

    @cached_property
    def network_id(self) -> bytes:
        """32 bytes every signature hash commits to, so that a transaction cannot be replayed
        on another network."""
        if self.from_spec:
            return tagged_hash("Obol/network", self.name.encode() + self.genesis_hash)
        return tagged_hash("Obol/network", self.name.encode())

    @cached_property
    def genesis(self) -> Block:
        """The first block.  Without allocations its one coinbase output is unspendable (not in
        the UTXO set); a chain spec's allocations are its outputs, and spendable."""
        outputs = list(self.genesis_allocations) or [TxOut(self.initial_subsidy, bytes(20))]
        coinbase = make_coinbase(0, outputs, self.genesis_message)
        header = BlockHeader.create(
            BLOCK_VERSION,
            bytes(32),
            merkle_root([coinbase.txid]),
            self.genesis_timestamp,
            self.genesis_bits,
            self.genesis_nonce,
        )
        return Block.create(header, [coinbase])

    @property
    def genesis_hash(self) -> bytes:
        return self.genesis.hash

    def subsidy(self, height: int) -> int:
        """Base units the coinbase at ``height`` may add to the fees (Bitcoin: GetBlockSubsidy)."""
        halvings = height // self.halving_interval
        if halvings >= MAX_HALVINGS:
            return 0
        return self.initial_subsidy >> halvings


GENESIS_TIME = 1795564800  # 2026-11-25 00:00:00 UTC

MAIN = NetworkParams(
    name="main",
    magic=b"OBOL",
    default_port=8333,
    api_port=8332,
    hrp="obol",
    pow_limit=(1 << 236) - 1,
    genesis_bits=0x1E010000,  # genesis: ~2^24 hashes
    retarget=True,
    target_spacing=120,
    asert_half_life=2 * 24 * 3600,
    coinbase_maturity=100,
    initial_subsidy=50 * COIN,
    halving_interval=210_000,
    max_future_block_time=2 * 3600,
    mine_on_demand=False,
    sync_commits=True,
    genesis_timestamp=GENESIS_TIME,
    genesis_nonce=29086104,
    genesis_message=b"Obol main genesis 2026-11-25",
)

TESTNET = NetworkParams(
    name="testnet",
    magic=b"OBTN",
    default_port=18333,
    api_port=18332,
    hrp="tobol",
    pow_limit=(1 << 248) - 1,
    genesis_bits=0x1E100000,  # genesis: ~2^20 hashes
    retarget=True,
    target_spacing=5,
    asert_half_life=300,
    coinbase_maturity=20,
    initial_subsidy=50 * COIN,
    halving_interval=210_000,
    max_future_block_time=120,
    mine_on_demand=False,
    sync_commits=True,
    genesis_timestamp=GENESIS_TIME,
    genesis_nonce=1180398,
    genesis_message=b"Obol testnet genesis 2026-11-25",
)

REGTEST = NetworkParams(
    name="regtest",
    magic=b"OBRT",
    default_port=18444,
    api_port=18443,
    hrp="robol",
    pow_limit=bits_to_target(0x207FFFFF),
    genesis_bits=0x207FFFFF,  # about every other hash wins
    retarget=False,
    target_spacing=600,
    asert_half_life=2 * 24 * 3600,
    coinbase_maturity=100,
    initial_subsidy=50 * COIN,
    halving_interval=2_500,
    max_future_block_time=2 * 3600,
    mine_on_demand=True,
    sync_commits=False,
    genesis_timestamp=GENESIS_TIME,
    genesis_nonce=0,
    genesis_message=b"Obol regtest genesis 2026-11-25",
)

NETWORKS: dict[str, NetworkParams] = {p.name: p for p in (MAIN, TESTNET, REGTEST)}


def get_params(name: str) -> NetworkParams:
    try:
        return NETWORKS[name]
    except KeyError:
        raise ValueError(f"unknown network {name!r} (choose from {', '.join(NETWORKS)})") from None


def check_genesis(params: NetworkParams) -> bool:
    """True if the genesis header carries valid proof of work."""
    return hash_meets_target(params.genesis_hash, bits_to_target(params.genesis_bits))
