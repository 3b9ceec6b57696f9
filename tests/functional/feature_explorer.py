"""The block explorer at ``/`` in a real headless Chromium against a real regtest
``obol-node`` (tests/framework/browser.py; skipped, with the reason, without Chromium).

One daemon and one browser for the module; the tests run in file order.  Every page must
render with no console error; search must find each kind; a block mined while the home
page is open must appear without a reload; and HTML in every field a user controls (a
peer's user agent, the search box, the address bar) must show as text, never run.  With
``OBOL_SCREENSHOTS=DIR`` the pages are saved as PNGs (docs/screenshots/ holds a set).
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any
from urllib.parse import quote

import pytest

from node.consensus.params import REGTEST, TX_VERSION
from node.primitives import encoding
from node.primitives.crypto import SigningKey, encode_address
from node.primitives.tx import OutPoint, Transaction, TxOut, sign_transaction
from tests.framework.browser import chromium, console_errors, screenshot, wait_for
from tests.framework.daemon import Client, Daemon
from tests.framework.util import poll_until, scenario_log
from tests.framework.wire import WireClient

log = scenario_log(__name__)
HRP = REGTEST.hrp
# what a peer, a search or a URL could slip in if the page took text as markup
HTML_AGENT = '<img src=x onerror="window.__pwned=1">'
HTML_SEARCH = '<b id="injected" onclick="window.__pwned=1">bold</b>'
HTML_ROUTE = '<svg onload="window.__pwned=1"></svg>'


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    d = Daemon(tmp_path_factory.mktemp("explorer") / "node").start()
    yield d
    code = d.stop()
    assert code == 0, d.log()
    assert "Traceback" not in d.log(), d.log()


@pytest.fixture(scope="module")
def browser():
    with chromium() as driver:
        yield driver


def mine(api: Client, n: int, to: str) -> list[str]:
    return api.ok("POST", "mine", {"blocks": n, "address": to})["hashes"]


def pay(coin: dict, key: SigningKey, fee: int) -> Transaction:
    return sign_transaction(
        TX_VERSION,
        [
            (
                OutPoint(bytes.fromhex(coin["txid"]), coin["index"]),
                TxOut(coin["amount"], key.address_hash),
                key,
            )
        ],
        [TxOut(coin["amount"] - fee, key.address_hash)],
        REGTEST.network_id,
    )


@pytest.fixture(scope="module")
def chain(daemon) -> dict[str, Any]:
    """101 blocks to a key, one of its payments confirmed and two in the mempool."""
    api = daemon.client
    key = SigningKey.generate()
    addr = encode_address(HRP, key.address_hash)
    mine(api, REGTEST.coinbase_maturity + 3, addr)
    coins = sorted(
        (u for u in api.ok("GET", f"address/{addr}")["utxos"] if u["mature"]),
        key=lambda u: u["height"],
    )
    confirmed = pay(coins[0], key, 5_000)
    api.ok("POST", "tx", {"hex": confirmed.raw.hex()})
    block = mine(api, 1, encode_address(HRP, SigningKey.generate().address_hash))[0]
    pending = [pay(coins[1], key, 20_000), pay(coins[2], key, 90_000)]
    for tx in pending:
        api.ok("POST", "tx", {"hex": tx.raw.hex()})
    return {
        "address": addr,
        "block": block,
        "height": api.ok("GET", "status")["height"],
        "confirmed": confirmed.txid.hex(),
        "pending": pending[0].txid.hex(),
    }


def url(daemon: Daemon, route: str = "") -> str:
    return f"http://127.0.0.1:{daemon.api_port}/#/{route}"


def main_text(driver: Any) -> str:
    return str(driver.execute_script("return document.getElementById('main').innerText"))


def shown_route(driver: Any) -> str:
    """The route the page has finished rendering (explorer.js sets it after each render)."""
    return str(driver.execute_script("return document.body.dataset.route || ''"))


def show(driver: Any, daemon: Daemon, route: str, expect: str) -> None:
    """Open ``#/route``, wait until that route is rendered, and check it shows ``expect``."""
    driver.get(url(daemon, route))
    want = "#/" + route
    wait_for(
        driver,
        lambda d: (
            d.execute_script("return location.hash || '#/'") == want and shown_route(d) == want
        ),
        f"#/{route} rendered",
    )
    wait_for(driver, lambda d: expect in main_text(d), f"{expect!r} on #/{route}")


class HtmlPeer:
    """A raw P2P peer whose `version` names HTML as its user agent, kept connected
    (answering pings) from its own thread and event loop while the browser looks."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.connected = threading.Event()
        self.stopping: asyncio.Event | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _run(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.stopping = asyncio.Event()

        class Client(WireClient):
            def version_body(self, *args: Any, **kw: Any) -> list[Any]:
                body = super().version_body(*args, **kw)
                body[6] = HTML_AGENT  # VersionMessage.user_agent (network/protocol.py)
                return body

        client = await Client.connect(
            self.port, encoding, REGTEST.magic, genesis_hash=REGTEST.genesis_hash
        )
        await client.handshake()
        self.connected.set()
        waiter = asyncio.ensure_future(self.stopping.wait())
        while not waiter.done():
            reader = asyncio.ensure_future(client.expect("no-such-message", 3600))
            await asyncio.wait({waiter, reader}, return_when=asyncio.FIRST_COMPLETED)
            reader.cancel()
        client.close()

    def __enter__(self) -> HtmlPeer:
        self.thread.start()
        assert self.connected.wait(30), "the HTML peer did not complete its handshake"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.loop is not None and self.stopping is not None
        self.loop.call_soon_threadsafe(self.stopping.set)
        self.thread.join(30)


# --- the pages ---------------------------------------------------------------------------


def test_every_page_renders_without_console_errors(daemon, chain, browser):
    pages = [
        ("", "Latest blocks", "home"),
        (f"block/{chain['height']}", chain["block"], "block"),
        (f"tx/{chain['confirmed']}", "Inputs (the coins they spend)", "tx"),
        (f"tx/{chain['pending']}", "in the mempool (unconfirmed)", "tx-mempool"),
        (f"address/{chain['address']}", chain["address"], "address"),
        ("mempool", "transactions by fee rate", "mempool"),
        ("peers", "user agent", "peers"),
    ]
    for route, expect, name in pages:
        log.info("Open #/%s", route)
        show(browser, daemon, route, expect)
        assert console_errors(browser) == [], route
        screenshot(browser, name)
    show(browser, daemon, "", "Latest blocks")
    charts = browser.execute_script(
        "return [...document.querySelectorAll('figure')].map(f => f.dataset.chart)"
    )
    assert charts == ["difficulty", "interval"], charts


def test_lists_are_paged(daemon, chain, browser):
    show(browser, daemon, "", "Latest blocks")
    rows = browser.execute_script(
        "return document.querySelectorAll('[data-list=blocks] tbody tr').length"
    )
    assert rows == 25  # of the 60 newest blocks
    browser.find_element("css selector", "[data-list=blocks] [data-page=next]").click()
    wait_for(browser, lambda d: "page 2 of 3" in main_text(d), "the second page")
    assert console_errors(browser) == []


def test_search_finds_each_kind(daemon, chain, browser):
    cases = [
        (str(chain["height"]), f"#/block/{chain['block']}"),
        (chain["block"], f"#/block/{chain['block']}"),
        (chain["confirmed"], f"#/tx/{chain['confirmed']}"),
        (chain["pending"], f"#/tx/{chain['pending']}"),
        (chain["address"], f"#/address/{chain['address']}"),
        ("99999999", "#/search/99999999"),
    ]
    show(browser, daemon, "", "Latest blocks")
    for query, landing in cases:
        box = browser.find_element("id", "q")
        box.clear()
        box.send_keys(query)
        browser.find_element("css selector", "#search button").click()
        wait_for(
            browser,
            lambda d, want=landing: d.execute_script("return location.hash") == want,
            landing,
        )
        wait_for(browser, lambda d, want=landing: shown_route(d) == want, f"{landing} rendered")
    assert "Nothing found" in main_text(browser)
    assert console_errors(browser) == []


def test_a_new_block_appears_live(daemon, chain, browser):
    show(browser, daemon, "", "Latest blocks")
    wait_for(browser, lambda d: d.find_element("id", "live").text == "live", "the events socket")
    browser.execute_script("window.__same_page = true")
    block = mine(daemon.client, 1, chain["address"])[0]
    log.info("Mined %s: wait for it on the open page", block)
    wait_for(browser, lambda d: block in main_text(d), "the new block on the page")
    assert browser.execute_script("return window.__same_page") is True  # not reloaded
    assert console_errors(browser) == []
    screenshot(browser, "home-live")


# --- what users control is text ------------------------------------------------------------


def assert_inert(driver: Any) -> None:
    assert driver.execute_script("return window.__pwned") is None
    assert (
        driver.execute_script(
            "return document.querySelectorAll('#main img, #main svg, #main #injected').length"
        )
        == 0
    )


def test_html_in_a_peer_user_agent_is_text(daemon, chain, browser):
    with HtmlPeer(daemon.p2p_port):
        poll_until(
            lambda: any(p["user_agent"] == HTML_AGENT for p in daemon.client.ok("GET", "peers")),
            what="the HTML peer in GET /peers",
        )
        show(browser, daemon, "peers", HTML_AGENT)
        assert_inert(browser)
        assert console_errors(browser) == []


def test_html_in_the_search_box_is_text(daemon, chain, browser):
    show(browser, daemon, "", "Latest blocks")
    box = browser.find_element("id", "q")
    box.clear()
    box.send_keys(HTML_SEARCH)
    browser.find_element("css selector", "#search button").click()
    wait_for(browser, lambda d: HTML_SEARCH in main_text(d), "the query shown as text")
    assert_inert(browser)
    assert console_errors(browser) == []


def test_html_in_the_address_bar_is_text(daemon, chain, browser):
    for route in (f"search/{HTML_ROUTE}", f"block/{HTML_ROUTE}", f"address/{HTML_ROUTE}"):
        browser.get(url(daemon, route))
        wait_for(browser, lambda d: shown_route(d) != "" and "Loading" not in main_text(d), route)
        assert_inert(browser)
        # the API refused the text (400): the only console errors are those refusals
        errors = console_errors(browser)
        assert all("status of 400" in e for e in errors), errors


# --- without a browser ----------------------------------------------------------------------


def test_the_pages_are_served_with_their_policy(daemon):
    api = daemon.client
    index = api.get("/")
    assert index.status == 200 and index.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in index.headers["content-security-policy"]
    assert index.headers["x-content-type-options"] == "nosniff"
    assert '<script src="/explorer/explorer.js"' in index.text
    for name, kind in (("explorer.js", "text/javascript"), ("explorer.css", "text/css")):
        resp = api.get(f"/explorer/{name}")
        assert resp.status == 200 and resp.headers["content-type"].startswith(kind), name
    assert "innerHTML" not in api.get("/explorer/explorer.js").text  # chain data is text
    for missing in ("/explorer/index.html", "/explorer/..%2fexplorer.py", "/explorer/nope.js"):
        resp = api.get(missing)
        assert resp.status == 404 and resp.json["error"]["code"] == "not-found", missing
    assert api.request("HEAD", "/").status == 200


def test_search_answers_each_kind(daemon, chain):
    api = daemon.client
    for q, kind, ident in (
        (str(chain["height"]), "block", chain["block"]),
        (chain["block"].upper(), "block", chain["block"]),
        (chain["pending"], "tx", chain["pending"]),
        (chain["address"], "address", chain["address"]),
        ("99999999", None, None),
        ("<b>", None, None),
    ):
        found = api.ok("GET", f"search?q={quote(q)}")
        assert (found["kind"], found["id"]) == (kind, ident), q
    for bad in ("", "q=", "q=a&q=b", "q=" + "x" * 129):
        resp = api.get(f"search?{bad}")
        assert resp.status == 400 and resp.json["error"]["code"] == "bad-param", bad
