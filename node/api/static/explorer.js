// The Obol block explorer: one page, routed by location.hash, reading the node's public
// API (/api/v1) and its events WebSocket.  Everything from the chain, the peers or the
// address bar reaches the page through text nodes (el() below), never as markup.
"use strict";

(() => {
  const API = "/api/v1/";
  const PAGE = 25; // rows per page of every list
  const CHART_BLOCKS = 60; // blocks the difficulty and interval charts cover
  const COIN = 1e8; // base units per coin
  const main = document.getElementById("main");
  const live = document.getElementById("live");
  let renderId = 0; // the render in progress; an older one that finishes late is dropped
  let lastTip = null; // hash of the newest block seen, marks it on the home page

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  async function api(path) {
    const resp = await fetch(API + path, { headers: { Accept: "application/json" } });
    const body = await resp.json();
    if (!resp.ok) {
      const e = body.error || {};
      throw new ApiError(resp.status, e.code || "error", e.message || resp.statusText);
    }
    return body;
  }

  // el("a", {href: "#/"}, "text", child...): an element; strings become text nodes
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v !== null && v !== undefined) node.setAttribute(k, String(v));
    }
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  const link = (route, text) => el("a", { href: "#/" + route }, text);
  const blockLink = (id, text) => link("block/" + encodeURIComponent(id), text ?? id);
  const txLink = (txid, text) => link("tx/" + encodeURIComponent(txid), text ?? txid);
  const addrLink = (a) => (a ? link("address/" + encodeURIComponent(a), a) : "unknown");
  const coins = (units) => (units === null || units === undefined ? "" : (units / COIN).toFixed(8));
  const when = (t) => (t ? new Date(t * 1000).toISOString().replace(".000Z", "Z") : "");

  function fields(pairs) {
    return el("dl", { class: "fields" }, pairs.map(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
  }

  function table(headers, rows, mono) {
    return el(
      "table",
      {},
      el("thead", {}, el("tr", {}, headers.map((h) => el("th", {}, h)))),
      el("tbody", {}, rows.map((cells) =>
        el("tr", {}, cells.map((c, i) => el("td", mono && mono.includes(i) ? { class: "mono" } : {}, c))))),
    );
  }

  // a list shown PAGE rows at a time, with previous/next buttons
  function paged(name, headers, items, toCells, mono) {
    const box = el("div", { "data-list": name });
    let page = 0;
    const pages = Math.max(1, Math.ceil(items.length / PAGE));
    function draw() {
      const slice = items.slice(page * PAGE, (page + 1) * PAGE);
      const prev = el("button", { type: "button", "data-page": "prev" }, "Previous");
      const next = el("button", { type: "button", "data-page": "next" }, "Next");
      prev.disabled = page === 0;
      next.disabled = page >= pages - 1;
      prev.addEventListener("click", () => { page -= 1; draw(); });
      next.addEventListener("click", () => { page += 1; draw(); });
      const pager = el("div", { class: "pager" }, prev, `page ${page + 1} of ${pages} (${items.length})`, next);
      box.replaceChildren(table(headers, slice.map(toCells), mono), items.length > PAGE ? pager : "");
    }
    draw();
    return box;
  }

  // a line or bar chart of numbers on a canvas (labels are numbers we format, not chain text)
  function chart(title, values, opts) {
    const w = 520, h = 180, pad = 36;
    const canvas = el("canvas", { width: w, height: h, "aria-label": title });
    const ctx = canvas.getContext("2d");
    const max = Math.max(...values, 1e-9), min = opts.bars ? 0 : Math.min(...values, max);
    const span = max - min || 1;
    ctx.fillStyle = "#5c6670";
    ctx.font = "11px sans-serif";
    ctx.fillText(opts.fmt(max), 2, pad - 6);
    ctx.fillText(opts.fmt(min), 2, h - 4);
    ctx.strokeStyle = "#d8dde3";
    ctx.strokeRect(pad, pad / 2, w - pad - 4, h - pad);
    const x = (i) => pad + ((w - pad - 8) * i) / Math.max(1, values.length - (opts.bars ? 0 : 1));
    const y = (v) => pad / 2 + (h - pad) * (1 - (v - min) / span);
    ctx.fillStyle = ctx.strokeStyle = "#2f6fb5";
    if (opts.bars) {
      const bw = Math.max(2, (w - pad - 8) / Math.max(1, values.length) - 2);
      values.forEach((v, i) => ctx.fillRect(x(i), y(v), bw, h - pad / 2 - y(v)));
    } else {
      ctx.beginPath();
      values.forEach((v, i) => (i ? ctx.lineTo(x(i), y(v)) : ctx.moveTo(x(i), y(v))));
      ctx.stroke();
    }
    return el("figure", { "data-chart": opts.name }, canvas, el("figcaption", {}, title));
  }

  // --- pages ------------------------------------------------------------------------------

  async function home() {
    const [status, recent] = await Promise.all([api("status"), api(`blocks?count=${CHART_BLOCKS}`)]);
    const headers = recent.headers.slice().reverse(); // newest first
    const intervals = recent.headers.slice(1).map((h, i) => h.timestamp - recent.headers[i].timestamp);
    return [
      el("h1", {}, `${status.network} chain`),
      el("div", { class: "cards" },
        [["height", status.height], ["difficulty", status.difficulty.toPrecision(6)],
         ["peers", status.peers], ["mempool", `${status.mempool.count} txs`],
         ["version", status.version]].map(([k, v]) => el("div", { class: "card" }, k, el("b", {}, v)))),
      el("div", { class: "charts" },
        chart(`difficulty, last ${recent.headers.length} blocks`, recent.headers.map((h) => h.difficulty),
              { name: "difficulty", fmt: (v) => v.toPrecision(4) }),
        intervals.length ? chart(`seconds between blocks, last ${intervals.length}`, intervals,
              { name: "interval", fmt: (v) => v.toFixed(0) }) : ""),
      el("h2", {}, "Latest blocks"),
      paged("blocks", ["height", "hash", "time", "difficulty"], headers, (h) => {
        const cells = [blockLink(h.hash, String(h.height)), blockLink(h.hash), when(h.timestamp), h.difficulty.toPrecision(6)];
        return cells;
      }, [1]),
    ];
  }

  function inputsOf(tx) {
    return tx.inputs.map((i) =>
      i.coinbase !== undefined
        ? ["coinbase", `height ${i.height}`, `miner data ${i.coinbase}`, ""]
        : [txLink(i.txid, `${i.txid}:${i.index}`), coins(i.amount), addrLink(i.address), ""]);
  }

  async function block(id) {
    const b = await api(`blocks/${encodeURIComponent(id)}?tx=full`);
    const txs = b.txs || [];
    return [
      el("h1", {}, `Block ${b.height}`),
      fields([
        ["hash", b.hash], ["height", b.height], ["confirmations", b.confirmations], ["status", b.status],
        ["previous", b.height > 0 ? blockLink(b.prev_hash) : "none (genesis)"],
        ["next", b.next_hash ? blockLink(b.next_hash) : "none yet"],
        ["time", `${when(b.timestamp)} (${b.timestamp})`], ["merkle root", b.merkle_root],
        ["bits", "0x" + b.bits.toString(16)], ["nonce", b.nonce], ["difficulty", b.difficulty],
        ["chain work", b.chain_work], ["version", b.version], ["size", `${b.size} bytes`],
        ["transactions", b.tx_count],
        ["fees", coins(txs.reduce((s, t) => s + (t.fee || 0), 0))],
      ]),
      el("h2", {}, "Transactions"),
      paged("txs", ["#", "txid", "inputs", "outputs", "amount out", "fee"], txs, (t) => [
        t.position, txLink(t.txid), t.coinbase ? "coinbase" : t.inputs.length, t.outputs.length,
        coins(t.outputs.reduce((s, o) => s + o.amount, 0)), t.fee === null ? "" : coins(t.fee),
      ], [1]),
    ];
  }

  async function tx(txid) {
    const t = await api(`tx/${encodeURIComponent(txid)}`);
    return [
      el("h1", {}, "Transaction"),
      fields([
        ["txid", t.txid],
        ["state", t.in_mempool ? "in the mempool (unconfirmed)" : `confirmed in block ${t.height}`],
        ["block", t.block_hash ? blockLink(t.block_hash) : "none"],
        ["confirmations", t.confirmations], ["time", when(t.time)], ["size", `${t.size} bytes`],
        ["fee", t.fee === null ? (t.coinbase ? "none (coinbase)" : "unknown") : `${coins(t.fee)} (${t.fee_rate} per byte)`],
        ["version", t.version], ["locktime", t.locktime],
      ]),
      el("h2", {}, "Inputs (the coins they spend)"),
      paged("inputs", ["spends", "amount", "address", ""], inputsOf(t), (r) => r, [0, 2]),
      el("h2", {}, "Outputs"),
      paged("outputs", ["#", "amount", "address"], t.outputs, (o) => [o.index, coins(o.amount), addrLink(o.address)], [2]),
    ];
  }

  async function address(addr) {
    const info = await api(`address/${encodeURIComponent(addr)}`);
    const box = el("div", {});
    const trail = []; // next_before of each page shown, for "Newer"
    async function page(before) {
      const q = `limit=${PAGE}` + (before === null ? "" : `&before=${before}`);
      const h = await api(`address/${encodeURIComponent(addr)}/history?${q}`);
      const older = el("button", { type: "button", "data-page": "older" }, "Older");
      const newer = el("button", { type: "button", "data-page": "newer" }, "Newer");
      older.disabled = h.next_before === null;
      newer.disabled = trail.length === 0;
      older.addEventListener("click", () => { trail.push(before); page(h.next_before).catch(fail); });
      newer.addEventListener("click", () => { page(trail.pop()).catch(fail); });
      box.replaceChildren(
        table(["txid", "height", "confirmations"], h.txs.map((e) =>
          [txLink(e.txid), e.height === null ? "mempool" : blockLink(e.block_hash, String(e.height)), e.confirmations]), [0]),
        el("div", { class: "pager" }, newer, older));
    }
    await page(null);
    const b = info.balance;
    return [
      el("h1", {}, `Address ${info.address}`),
      el("div", { class: "cards" },
        [["confirmed", coins(b.confirmed)], ["unconfirmed", coins(b.unconfirmed)],
         ["immature", coins(b.immature)], ["total", coins(b.total)]].map(([k, v]) => el("div", { class: "card" }, k, el("b", {}, v)))),
      el("h2", {}, "History"), box,
      el("h2", {}, "Unspent outputs"),
      paged("utxos", ["output", "amount", "height", "confirmations", "spent in mempool by"], info.utxos, (u) => [
        txLink(u.txid, `${u.txid}:${u.index}`), coins(u.amount), u.height === null ? "mempool" : u.height,
        u.confirmations, u.spent_by ? txLink(u.spent_by) : ""], [0]),
    ];
  }

  async function mempool() {
    const m = await api("mempool");
    const hist = m.fee_histogram;
    return [
      el("h1", {}, "Mempool"),
      el("div", { class: "cards" },
        [["transactions", m.count], ["bytes", m.bytes], ["usage", `${m.usage} / ${m.max_usage}`],
         ["min fee rate now", m.mempool_min_fee_rate]].map(([k, v]) => el("div", { class: "card" }, k, el("b", {}, v)))),
      hist.length ? el("div", { class: "charts" }, chart(
        `transactions by fee rate (from ${hist.map((b) => b.from).join(", ")} per byte)`,
        hist.map((b) => b.count), { name: "feerate", bars: true, fmt: (v) => v.toFixed(0) })) : "",
      hist.length ? table(["fee rate from", "transactions", "bytes"], hist.map((b) => [b.from, b.count, b.bytes])) : "",
      el("h2", {}, "Transactions (oldest first)"),
      paged("mempool", ["txid"], m.txids, (t) => [txLink(t)], [0]),
    ];
  }

  async function peers() {
    const list = await api("peers");
    return [
      el("h1", {}, "Peers"),
      paged("peers", ["id", "address", "direction", "user agent", "height", "ping ms", "in / out bytes"], list, (p) => [
        p.id, p.address, p.direction, p.user_agent, p.best_known_height ?? p.height,
        p.ping_ms === null ? "" : p.ping_ms, `${p.bytes_in} / ${p.bytes_out}`], [1, 3]),
    ];
  }

  async function search(q) {
    const found = await api(`search?q=${encodeURIComponent(q)}`);
    if (found.kind) {
      location.replace(`#/${found.kind}/${encodeURIComponent(found.id)}`);
      return [el("p", {}, "Found.")];
    }
    return [el("h1", {}, "Nothing found"), el("p", { "data-search": "none" }, "No block, transaction or address is ", el("span", { class: "mono" }, q), ".")];
  }

  const ROUTES = { "": home, block, tx, address, mempool, peers, search };

  function fail(e) {
    main.replaceChildren(el("div", { class: "error" }, e instanceof ApiError ? `${e.code}: ${e.message}` : String(e)));
  }

  async function render() {
    const id = ++renderId;
    const [name, ...rest] = location.hash.replace(/^#\/?/, "").split("/");
    const arg = decodeURIComponent(rest.join("/"));
    const page = ROUTES[name];
    try {
      const content = page ? await page(arg) : [el("h1", {}, "No such page")];
      if (id === renderId) {
        main.replaceChildren(...content);
        document.body.dataset.page = name || "home";
        document.body.dataset.route = location.hash || "#/"; // what is shown (tests wait on it)
      }
    } catch (e) {
      if (id === renderId) {
        fail(e);
        document.body.dataset.route = location.hash || "#/";
      }
    }
  }

  // --- live updates: the events WebSocket ----------------------------------------------

  function connect(delay) {
    const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}${API}events?types=tip,tx`);
    ws.addEventListener("open", () => { live.textContent = "live"; live.classList.add("on"); delay = 1000; });
    ws.addEventListener("message", (msg) => {
      const event = JSON.parse(msg.data);
      const page = document.body.dataset.page;
      if (event.type === "tip" && event.hash !== lastTip) {
        lastTip = event.hash;
        live.dataset.height = String(event.height);
        if (page === "home" || page === "mempool") render();
      } else if (event.type === "tx" && page === "mempool") {
        render();
      }
    });
    ws.addEventListener("close", () => {
      live.textContent = "offline";
      live.classList.remove("on");
      setTimeout(() => connect(Math.min(delay * 2, 30000)), delay);
    });
  }

  document.getElementById("search").addEventListener("submit", (e) => {
    e.preventDefault();
    const q = document.getElementById("q").value.trim();
    if (q) location.hash = "#/search/" + encodeURIComponent(q);
  });
  window.addEventListener("hashchange", render);
  render();
  connect(1000);
})();
