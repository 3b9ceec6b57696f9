// obol-testnet dashboard: polls /state.json and redraws the graph; text goes in as text.
"use strict";

(() => {
  const POLL_MS = 1000;
  const SVG = "http://www.w3.org/2000/svg";
  const graph = document.getElementById("graph");
  const events = document.getElementById("events");
  let previous = null;

  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = String(text);
    return node;
  }

  function cell(text) {
    const td = document.createElement("td");
    td.textContent = text === null || text === undefined ? "" : String(text);
    return td;
  }

  function note(text) {
    const li = document.createElement("li");
    li.textContent = `${new Date().toISOString().slice(11, 19)} ${text}`;
    events.prepend(li);
    while (events.children.length > 50) events.lastChild.remove();
  }

  function changes(before, now) {
    if (!before) return;
    for (const n of now.nodes) {
      const b = before.nodes.find((x) => x.index === n.index);
      if (b && b.running !== n.running) note(`node ${n.index} ${n.running ? "is up" : "is down"}`);
    }
    if (JSON.stringify(before.partition) !== JSON.stringify(now.partition)) {
      note(now.partition ? `partition ${now.partition.map((g) => g.join(",")).join(" | ")}` : "healed");
    }
    if (before.converged !== now.converged) note(now.converged ? "converged" : "tips differ");
  }

  function draw(state) {
    const cx = 400, cy = 260, r = 200;
    const at = (i) => {
      const a = (2 * Math.PI * i) / state.nodes.length - Math.PI / 2;
      return [cx + r * Math.cos(a), cy + r * Math.sin(a)];
    };
    const parts = [];
    for (const l of state.links) {
      const [x1, y1] = at(l.a), [x2, y2] = at(l.b);
      parts.push(svg("line", { x1, y1, x2, y2, class: l.state, "data-link": `${l.a}-${l.b}`, "data-state": l.state }));
    }
    for (const n of state.nodes) {
      const [x, y] = at(n.index);
      const g = svg("g", { "data-node": n.index, "data-height": n.height ?? "", "data-tip": n.tip ?? "" });
      g.append(svg("circle", { cx: x, cy: y, r: 30, class: n.running ? "node" : "node dead" }));
      g.append(svg("text", { x, y: y - 4 }, `node ${n.index}${n.miner ? " (m)" : ""}`));
      g.append(svg("text", { x, y: y + 12 }, n.running ? `h ${n.height}` : "down"));
      g.append(svg("text", { x, y: y + 46 }, n.tip ? n.tip.slice(0, 12) : ""));
      parts.push(g);
    }
    graph.replaceChildren(...parts);
    const tbody = document.querySelector("#nodes tbody");
    tbody.replaceChildren(...state.nodes.map((n) => {
      const tr = document.createElement("tr");
      tr.append(cell(n.index), cell(n.host), cell(n.running ? "up" : "down"), cell(n.height),
        cell(n.tip ? n.tip.slice(0, 16) : ""), cell(n.peers), cell(n.group));
      return tr;
    }));
    document.getElementById("summary").textContent =
      `${state.network}, ${state.nodes.length} nodes, ${state.topology} topology` +
      (state.partition ? `, partitioned ${state.partition.map((g) => g.join(",")).join(" | ")}` : "");
    const conv = document.getElementById("converged");
    conv.textContent = state.converged ? "converged: one tip" : "not converged";
    conv.className = state.converged ? "yes" : "no";
    document.body.dataset.converged = String(state.converged);
    document.body.dataset.partitioned = String(Boolean(state.partition));
  }

  async function poll() {
    try {
      const resp = await fetch("/state.json", { cache: "no-store" });
      if (resp.ok) {
        const state = await resp.json();
        changes(previous, state);
        previous = state;
        draw(state);
      }
    } catch (e) {
      document.getElementById("summary").textContent = "dashboard unreachable";
    }
    setTimeout(poll, POLL_MS);
  }
  poll();
})();
