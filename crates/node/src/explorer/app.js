// Agentic explorer: a hash-routed single page over the node's JSON API.
//
// Every page reads `/v1/...` routes; every figure carries a `{}` link to the JSON it
// came from. Ledger events (payments, slashes, bisection rounds, history) come from the
// event stream `/v1/events?from=H`: the node replays the stored blocks, then follows
// live, and this page indexes them by job, dispute and address. The DOM is built with
// `textContent` only (no HTML from data), and the page runs under a CSP with no inline
// script or style.

const main = document.getElementById("main");
const live = document.getElementById("live");

/** Blocks replayed from the event stream, at most, behind the tip. */
const REPLAY_BLOCKS = 5000;

// ---------------------------------------------------------------- DOM and formats

function h(tag, attrs, ...children) {
  const svg = ["svg", "circle", "rect", "line", "text", "g", "title", "polyline", "a"].includes(tag) && attrs && attrs.svg;
  const el = svg ? document.createElementNS("http://www.w3.org/2000/svg", tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "svg" || v === undefined || v === null || v === false) continue;
    if (k === "class") el.setAttribute("class", v);
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}
const s = (tag, attrs, ...children) => h(tag, { ...attrs, svg: true }, ...children);

/** A decimal string or number with thousands separators (amounts are u128 strings). */
function num(v) {
  if (v === null || v === undefined) return "—";
  const str = String(v);
  if (!/^-?\d+$/.test(str)) return str;
  const neg = str.startsWith("-");
  const digits = neg ? str.slice(1) : str;
  return (neg ? "-" : "") + digits.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
}
const big = (v) => { try { return BigInt(v ?? 0); } catch { return 0n; } };
const amount = (v) => h("span", { class: "amt", title: `${num(v)} base units` }, num(v));
const pct = (ppm) => `${(Number(ppm) / 10000).toFixed(1)} %`;

/** A hash or address shortened, the full value in its title, with a copy button. */
function hash(v, href) {
  if (!v) return h("span", { class: "muted" }, "—");
  const short = v.length > 16 ? `${v.slice(0, 8)}…${v.slice(-6)}` : v;
  const text = href ? h("a", { href, class: "hash", title: v }, short) : h("span", { class: "hash", title: v }, short);
  const btn = h("button", {
    type: "button", class: "copy", "aria-label": `Copy ${v}`, title: "Copy",
    onclick: async (e) => {
      try { await navigator.clipboard.writeText(v); e.target.textContent = "copied"; } catch { e.target.textContent = "failed"; }
      setTimeout(() => { e.target.textContent = "copy"; }, 1200);
    },
  }, "copy");
  return h("span", { class: "h", "data-full": v }, text, btn);
}
const addr = (a) => hash(a, `#/accounts/${a}`);

/** A link to the JSON a figure came from. */
const src = (path) => h("a", { class: "src", href: path, title: `JSON source: ${path}`, "aria-label": `JSON source ${path}` }, "{}");

function ago(ms) {
  const d = Math.round((Date.now() - ms) / 1000);
  const a = Math.abs(d);
  const [n, u] = a < 60 ? [a, "s"] : a < 3600 ? [Math.round(a / 60), "min"] : a < 86400 ? [Math.round(a / 3600), "h"] : [Math.round(a / 86400), "d"];
  return d >= 0 ? `${n} ${u} ago` : `in ${n} ${u}`;
}
function time(ms) {
  if (!ms) return h("span", { class: "muted" }, "—");
  const iso = new Date(ms).toISOString();
  return h("time", { datetime: iso, title: iso }, `${ago(ms)} · ${iso.replace("T", " ").slice(0, 19)} UTC`);
}

function chip(text) {
  const t = String(text);
  const cls = /Completed|Finalized|finalized|Passed|Resolved|Executed|active|Activated|^ok$/.test(t) ? "ok"
    : /Failed|Cancelled|Slash|Rejected|retired|Voided/.test(t) ? "bad" : "warn";
  return h("span", { class: `chip ${cls}` }, t);
}
/** Enum values serialize as a string or a one-key object. */
const variant = (v) => (v && typeof v === "object" ? Object.keys(v)[0] : String(v));

function kv(pairs) {
  return h("dl", { class: "kv" }, pairs.filter(Boolean).map(([k, v]) => [h("dt", null, k), h("dd", null, v)]));
}
function card(label, value, path) {
  return h("div", { class: "card" }, h("div", { class: "label" }, label, path ? src(path) : null), h("div", { class: "value" }, value));
}
function table(caption, head, rows, numeric = []) {
  return h("div", { class: "table-wrap" }, h("table", null,
    h("caption", { class: "sr" }, caption),
    h("thead", null, h("tr", null, head.map((c, i) => h("th", { scope: "col", class: numeric.includes(i) ? "num" : null }, c)))),
    h("tbody", null, rows.length ? rows.map((r) => h("tr", null, r.map((c, i) => h("td", { class: numeric.includes(i) ? "num" : null }, c))))
      : h("tr", null, h("td", { colspan: head.length, class: "muted" }, "none")))));
}

// ---------------------------------------------------------------- API

class ApiError extends Error {
  constructor(path, status, body) {
    super(`${path}: ${status} ${body?.error?.message ?? ""}`);
    this.status = status;
  }
}
async function api(path) {
  const r = await fetch(path, { headers: { accept: "application/json" } });
  let body = null;
  try { body = await r.json(); } catch { /* not JSON */ }
  if (!r.ok) throw new ApiError(path, r.status, body);
  return body;
}
const maybe = (path) => api(path).catch((e) => (e.status === 404 ? null : Promise.reject(e)));

// ---------------------------------------------------------------- the ledger's events

/** Events from the stream, indexed; `ready` resolves once the replay reached the tip. */
const ledger = {
  events: [], blocks: new Map(), byJob: new Map(), byDispute: new Map(), byAddr: new Map(), byProposal: new Map(),
  from: 1, tip: 0, ready: null, listeners: new Set(),
};
const ADDRESS_FIELDS = ["who", "from", "to", "provider", "payer", "auditor", "defendant", "challenger", "winner", "claimant", "principal", "agent", "voter", "proposer"];
function push(map, key, e) {
  if (key === undefined || key === null) return;
  const k = String(key);
  if (!map.has(k)) map.set(k, []);
  const l = map.get(k);
  if (l[l.length - 1] !== e) l.push(e);
}
function indexEvent(raw) {
  const kind = variant(raw.event);
  const data = raw.event[kind] ?? {};
  const e = { height: raw.height, tx: raw.tx, kind, data };
  ledger.events.push(e);
  push(ledger.byJob, data.job, e);
  push(ledger.byDispute, data.dispute, e);
  push(ledger.byProposal, data.proposal, e);
  for (const f of ADDRESS_FIELDS) if (typeof data[f] === "string") push(ledger.byAddr, data[f], e);
}
/** The transaction id of an event, once its block arrived. */
const txOf = (e) => (e.tx === null || e.tx === undefined ? null : ledger.blocks.get(e.height)?.txs?.[e.tx] ?? null);
/** Where an event's JSON lives: its transaction's receipt, or the block's event replay. */
const eventSrc = (e) => { const t = txOf(e); return t ? `/v1/txs/${t}` : `/v1/events?from=${e.height}`; };

function connect(status) {
  ledger.tip = status.height;
  ledger.from = Math.max(1, status.height - REPLAY_BLOCKS + 1);
  let resolve;
  ledger.ready = new Promise((r) => { resolve = r; });
  if (status.height === 0) resolve();
  const es = new EventSource(`/v1/events?from=${ledger.from}`);
  es.addEventListener("ledger", (m) => indexEvent(JSON.parse(m.data)));
  es.addEventListener("block", (m) => {
    const b = JSON.parse(m.data);
    ledger.blocks.set(b.height, b);
    if (b.height >= ledger.tip) { ledger.tip = b.height; resolve(); }
    live.textContent = `live · block ${num(b.height)}`;
    live.classList.add("on");
    for (const f of ledger.listeners) f(b);
  });
  es.addEventListener("lagged", () => { live.textContent = "lagged: reload for missed events"; });
  es.onerror = () => { live.classList.remove("on"); live.textContent = "reconnecting…"; };
  // A page left open in the back/forward cache must not hold a connection (browsers
  // allow six per host).
  window.addEventListener("pagehide", () => es.close());
  // The replay is bounded; a page never waits on it for long.
  setTimeout(resolve, 4000);
}
const eventsReady = () => ledger.ready ?? Promise.resolve();

/** Lists show the newest `LIST` entries: ids come from the events seen (the API pages
 * by ascending id). */
const LIST = 200;
function latest(route, index) {
  const ids = [...index.keys()].map(Number).filter(Number.isFinite);
  const max = ids.length ? Math.max(...ids) : 0;
  return max >= LIST ? `${route}?after=${max - LIST}` : route;
}
const counted = (path, n) => (path.includes("after=") ? `latest ${num(n)}` : num(n));

function describe(e) {
  const d = e.data;
  const parts = [];
  for (const [k, v] of Object.entries(d)) {
    if (k === "job") parts.push(["job ", h("a", { href: `#/jobs/${v}` }, `#${v}`)]);
    else if (k === "dispute") parts.push(["dispute ", h("a", { href: `#/disputes/${v}` }, `#${v}`)]);
    else if (k === "mandate") parts.push(["mandate ", h("a", { href: `/v1/mandates/${v}` }, `#${v}`)]);
    else if (typeof v === "string" && /^[0-9a-f]{64}$/.test(v)) parts.push([`${k} `, ADDRESS_FIELDS.includes(k) ? addr(v) : hash(v)]);
    else if (typeof v === "string" && /^\d+$/.test(v)) parts.push([`${k} `, amount(v)]);
    else if (v && typeof v === "object") parts.push([`${k} `, JSON.stringify(v)]);
    else parts.push(`${k} ${v}`);
  }
  return parts.map((p, i) => [i ? " · " : "", p]);
}
function eventsTable(caption, events) {
  return table(caption, ["Height", "Event", "Details", "Tx"], events.slice().reverse().map((e) => [
    h("a", { href: `#/blocks/${e.height}` }, num(e.height)), chip(e.kind), h("span", null, describe(e)),
    [txOf(e) ? hash(txOf(e), `#/txs/${txOf(e)}`) : h("span", { class: "muted" }, "block"), src(eventSrc(e))],
  ]));
}

// ---------------------------------------------------------------- charts (inline SVG)

function scatter(points, { xLabel, yLabel, caption, yMax, width = 560, height = 300 }) {
  const pad = 44;
  const xs = points.map((p) => p.x), ys = points.map((p) => p.y);
  const [x0, x1] = [Math.min(0, ...xs), Math.max(1, ...xs) * 1.1];
  const [y0, y1] = [Math.min(0, ...ys), yMax ?? Math.max(1, ...ys) * 1.1];
  const X = (x) => pad + ((x - x0) / (x1 - x0 || 1)) * (width - 2 * pad);
  const Y = (y) => height - pad - ((y - y0) / (y1 - y0 || 1)) * (height - 2 * pad);
  return s("svg", { class: "chart", viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": caption },
    s("title", null, caption),
    s("line", { class: "axis", x1: pad, y1: height - pad, x2: width - pad, y2: height - pad }),
    s("line", { class: "axis", x1: pad, y1: pad / 2, x2: pad, y2: height - pad }),
    s("text", { x: width / 2, y: height - 8, "text-anchor": "middle" }, xLabel),
    s("text", { x: 12, y: height / 2, transform: `rotate(-90 12 ${height / 2})`, "text-anchor": "middle" }, yLabel),
    s("text", { x: pad, y: height - pad + 14, "text-anchor": "middle" }, num(Math.round(x0))),
    s("text", { x: width - pad, y: height - pad + 14, "text-anchor": "middle" }, num(Math.round(x1))),
    s("text", { x: pad - 4, y: height - pad, "text-anchor": "end" }, String(Math.round(y0))),
    s("text", { x: pad - 4, y: pad / 2 + 4, "text-anchor": "end" }, String(Math.round(y1))),
    points.map((p) => s("a", { href: p.href },
      s("circle", { class: "dot", cx: X(p.x).toFixed(1), cy: Y(p.y).toFixed(1), r: 6 }, s("title", null, p.label)))));
}
function bars(values, { caption, label, width = 560, height = 160 }) {
  const pad = 30;
  const max = Math.max(1, ...values.map((v) => v.y));
  const w = (width - 2 * pad) / Math.max(1, values.length);
  return s("svg", { class: "chart", viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": caption },
    s("title", null, caption),
    s("line", { class: "axis", x1: pad, y1: height - pad, x2: width - pad, y2: height - pad }),
    s("text", { x: pad, y: pad - 8 }, `max ${num(Math.round(max))}`),
    s("text", { x: width / 2, y: height - 8, "text-anchor": "middle" }, label),
    values.map((v, i) => {
      const bh = (v.y / max) * (height - 2 * pad);
      return s("rect", { class: "bar", x: (pad + i * w + 1).toFixed(1), y: (height - pad - bh).toFixed(1), width: Math.max(1, w - 2).toFixed(1), height: bh.toFixed(1) },
        s("title", null, v.label));
    }));
}

// ---------------------------------------------------------------- pages

async function overview() {
  await eventsReady();
  const [J, D] = [latest("/v1/jobs", ledger.byJob), latest("/v1/disputes", ledger.byDispute)];
  const [st, bl, pr, jobs, ds] = await Promise.all([
    api("/v1/status"), api("/v1/blocks?limit=50"), api("/v1/providers"), api(J), api(D),
  ]);
  const blocks = bl.blocks.slice().reverse();
  const gaps = [];
  for (let i = 1; i < bl.blocks.length; i++) gaps.push({ h: bl.blocks[i].height, ms: bl.blocks[i].timestamp_ms - bl.blocks[i - 1].timestamp_ms });
  const txs = bl.blocks.reduce((n, b) => n + b.txs.length, 0);
  const span = bl.blocks.length > 1 ? (bl.blocks[bl.blocks.length - 1].timestamp_ms - bl.blocks[0].timestamp_ms) / 1000 : 0;
  const avgGap = gaps.length ? gaps.reduce((a, g) => a + g.ms, 0) / gaps.length : 0;
  const byStatus = {};
  for (const j of jobs.jobs) byStatus[variant(j.status)] = (byStatus[variant(j.status)] ?? 0) + 1;
  const bonded = pr.providers.reduce((a, p) => a + big(p.bonded), 0n);
  return [
    h("h1", null, "Network overview"),
    h("div", { class: "cards" },
      card("Height", h("a", { href: `#/blocks/${st.height}`, id: "height" }, num(st.height)), "/v1/status"),
      card("Chain id", num(st.chain_id), "/v1/status"),
      card("Mean block interval", `${(avgGap / 1000).toFixed(2)} s`, "/v1/blocks?limit=50"),
      card("Throughput", `${span ? (txs / span).toFixed(2) : "0"} tx/s`, "/v1/blocks?limit=50"),
      card("Mempool", `${num(st.mempool.txs)} txs`, "/v1/status"),
      card("Providers", num(pr.providers.length), "/v1/providers"),
      card("Provider stake", amount(bonded.toString()), "/v1/providers"),
      card(J.includes("after=") ? `Jobs (latest ${LIST})` : "Jobs", Object.entries(byStatus).map(([k, v]) => `${v} ${k}`).join(" · ") || "0", J),
      card("Disputes", counted(D, ds.disputes.length), D),
      card("Total supply", amount(st.supply.total), "/v1/status"),
      card("Burned (all time)", amount(st.supply.burned), "/v1/status"),
      card("Issued (all time)", amount(st.supply.issued), "/v1/status"),
      card("Bonded (all accounts)", amount(st.supply.bonded), "/v1/status"),
      card("Validators", num(st.validators.length), "/v1/status"),
    ),
    h("p", { class: "note" }, `State root `, hash(st.state_root), ` · node version ${st.version}. Finality and throughput are computed from the timestamps of the last ${bl.blocks.length} finalized blocks (one block finalizes its transactions). Total supply = genesis ${num(st.supply.genesis)} + issued − burned, from the ledger's own counters.`),
    st.validators.length
      ? h("section", null, h("h2", null, `Validators (${st.validators.length}) `, src("/v1/status")),
        table("Validators", ["#", "Public key (ed25519)"], st.validators.map((k, i) => [num(i), hash(k)])))
      : h("p", { class: "note" }, "This node serves its chain without running consensus: no validator set to list."),
    h("div", { class: "row" },
      h("section", null, h("h2", null, "Finality: time between blocks ", src("/v1/blocks?limit=50")),
        bars(gaps.map((g) => ({ y: g.ms, label: `block ${g.h}: ${g.ms} ms after the previous` })), { caption: "Time between consecutive finalized blocks, ms", label: "ms between blocks, oldest to newest" })),
      h("section", null, h("h2", null, "Throughput: transactions per block ", src("/v1/blocks?limit=50")),
        bars(bl.blocks.map((b) => ({ y: b.txs.length, label: `block ${b.height}: ${b.txs.length} txs` })), { caption: "Transactions per finalized block", label: "txs per block, oldest to newest" }))),
    h("h2", null, "Recent blocks ", src("/v1/blocks?limit=50")),
    table("Recent blocks", ["Height", "Time", "Txs", "Succeeded", "Digest"], blocks.slice(0, 20).map((b) => [
      h("a", { href: `#/blocks/${b.height}` }, num(b.height)), time(b.timestamp_ms), num(b.txs.length), num(b.succeeded), hash(b.digest),
    ]), [2, 3]),
  ];
}

function providerRows(list) {
  return list.map((p) => [
    hash(p.address, `#/providers/${p.address}`), amount(p.offer.price), pct(p.reputation_ppm), amount(p.bonded),
    num(p.offer.region), num(p.offer.capacity), num(p.open), p.retired ? chip("retired") : chip("active"),
  ]);
}

async function providers() {
  const pr = await api("/v1/providers");
  const list = pr.providers;
  return [
    h("h1", null, `Providers (${num(list.length)}) `, src("/v1/providers")),
    table("Providers", ["Provider", "Price / Mop", "Reputation", "Stake", "Region", "Capacity", "Open jobs", "Status"], providerRows(list), [1, 2, 3, 5, 6]),
    h("div", { class: "row" },
      h("section", null, h("h2", null, "Price vs reputation ", src("/v1/providers")),
        scatter(list.map((p) => ({ x: Number(p.offer.price), y: p.reputation_ppm / 10000, href: `#/providers/${p.address}`, label: `${p.address.slice(0, 8)}: price ${p.offer.price}, reputation ${pct(p.reputation_ppm)}` })),
          { xLabel: "price per mega-op (base units)", yLabel: "reputation %", yMax: 100, caption: "Price against reputation, one dot per provider" })),
      h("section", null, h("h2", null, "Network coordinates ", src("/v1/providers")),
        scatter(list.map((p) => ({ x: p.offer.coord.x, y: p.offer.coord.y, href: `#/providers/${p.address}`, label: `${p.address.slice(0, 8)}: (${p.offer.coord.x}, ${p.offer.coord.y}) µs` })),
          { xLabel: "x (µs)", yLabel: "y (µs)", caption: "Vivaldi coordinates of providers on a plane" }))),
  ];
}

async function provider(a) {
  const [p, work, acct] = await Promise.all([api(`/v1/providers/${a}`), api(`/v1/providers/${a}/work`), api(`/v1/accounts/${a}`)]);
  await eventsReady();
  const evs = ledger.byAddr.get(a) ?? [];
  const jobs = [...new Set(evs.filter((e) => e.data.job !== undefined).map((e) => e.data.job))].reverse();
  const earned = evs.filter((e) => e.kind === "StagePaid" && e.data.provider === a).reduce((x, e) => x + big(e.data.amount), 0n)
    + evs.filter((e) => e.kind === "AuditPaid" && e.data.auditor === a).reduce((x, e) => x + big(e.data.fee), 0n);
  const slashed = evs.filter((e) => e.kind === "Slashed" && e.data.who === a).reduce((x, e) => x + big(e.data.amount), 0n);
  const P = `/v1/providers/${a}`;
  return [
    h("h1", null, "Provider ", hash(a)),
    kv([
      ["Price per mega-op", [amount(p.offer.price), src(P)]],
      ["Reputation", [pct(p.reputation_ppm), ` (success ${num(p.reputation.success)}, failure ${num(p.reputation.failure)})`, src(P)]],
      ["Stake", [amount(p.bonded), src(P)]],
      ["Balance", [amount(acct.balance), src(`/v1/accounts/${a}`)]],
      ["Region / capacity", [`${p.offer.region} / ${p.offer.capacity}`, src(P)]],
      ["Coordinate", [`(${p.offer.coord.x}, ${p.offer.coord.y}) µs, height ${p.offer.coord.height}`, src(P)]],
      ["Endpoint", p.offer.endpoint || "none"],
      ["Registered at", h("a", { href: `#/blocks/${p.registered_at}` }, num(p.registered_at))],
      ["Status", p.retired ? chip("retired") : chip("active")],
      ["Earned (events seen)", [amount(earned.toString()), src(`/v1/events?from=${ledger.from}`)]],
      ["Slashed (events seen)", [amount(slashed.toString()), src(`/v1/events?from=${ledger.from}`)]],
      ["Account", h("a", { href: `#/accounts/${a}` }, "balance and history")],
    ]),
    h("h2", null, "Open work ", src(`${P}/work`)),
    table("Open work", ["Job", "Status"], work.jobs.map((j) => [h("a", { href: `#/jobs/${j.id}` }, `#${j.id}`), chip(variant(j.status))])),
    h("h2", null, "Recent jobs"),
    h("p", null, jobs.length ? jobs.slice(0, 50).map((j, i) => [i ? ", " : "", h("a", { href: `#/jobs/${j}` }, `#${j}`)]) : h("span", { class: "muted" }, "none seen")),
    h("h2", null, "Events"),
    eventsTable("Provider events", evs.slice(-200)),
  ];
}

function jobBill(id) {
  const evs = ledger.byJob.get(String(id)) ?? [];
  const byStage = new Map();
  let total = 0n;
  for (const e of evs) {
    const v = e.kind === "StagePaid" ? big(e.data.amount) : e.kind === "AuditPaid" ? big(e.data.fee) : e.kind === "ProviderCompensated" ? big(e.data.amount) : null;
    if (v === null) continue;
    byStage.set(e.data.stage, (byStage.get(e.data.stage) ?? 0n) + v);
    total += v;
  }
  return { byStage, total, events: evs };
}

async function jobs(filter) {
  await eventsReady();
  const J = latest("/v1/jobs", ledger.byJob);
  const list = await api(J);
  const statuses = [...new Set(list.jobs.map((j) => variant(j.status)))];
  const shown = list.jobs.filter((j) => !filter || variant(j.status) === filter).reverse();
  const select = h("select", { id: "status-filter", onchange: (e) => { location.hash = e.target.value ? `#/jobs?status=${e.target.value}` : "#/jobs"; } },
    h("option", { value: "" }, "all"), statuses.map((v) => h("option", { value: v, selected: v === filter }, v)));
  return [
    h("h1", null, `Jobs (${counted(J, list.jobs.length)}) `, src(J)),
    h("div", { class: "filters" }, h("label", { for: "status-filter" }, "Status"), select),
    table("Jobs", ["Job", "Status", "Requester", "Stages", "Verification", "Escrow", "Paid", "Submitted at"], shown.map((j) => [
      h("a", { href: `#/jobs/${j.id}` }, `#${j.id}`), chip(variant(j.status)), addr(j.requester), num(j.stages.length),
      variant(j.spec.requirements.verification), amount(j.escrow), amount(jobBill(j.id).total.toString()),
      h("a", { href: `#/blocks/${j.submitted_at}` }, num(j.submitted_at)),
    ]), [3, 5, 6]),
  ];
}

async function job(id) {
  const J = `/v1/jobs/${id}`;
  const j = await api(J);
  await eventsReady();
  const bill = jobBill(id);
  const disputes = [...new Set(bill.events.filter((e) => e.kind === "DisputeOpened").map((e) => e.data.dispute))];
  const refund = bill.events.filter((e) => /Job(Completed|Failed|Cancelled|Settled)/.test(e.kind)).reduce((a, e) => a + big(e.data.refund), 0n);
  // A broken generation session's bill, burned from the escrow (paid to nobody).
  const charged = bill.events.filter((e) => e.kind === "SessionCharged").reduce((a, e) => a + big(e.data.burned), 0n);
  const stageRows = j.stages.map((st, i) => {
    const spec = j.spec.stages[i] ?? {};
    const phases = bill.events.filter((e) => e.data.stage === i).map((e) => `${e.kind}@${e.height}`);
    // The audit slot is cleared once the stage settles; the event keeps who it was.
    const auditor = st.audit?.auditor ?? (st.phase?.Auditing?.auditor) ?? bill.events.find((e) => e.kind === "AuditAssigned" && e.data.stage === i)?.data.auditor;
    return [
      `#${i}`, `${spec.first_layer}–${spec.first_layer + spec.layers - 1}`, num(spec.ops), chip(variant(st.phase)),
      h("span", null, st.slots.map((sl, k) => sl.assignment ? [k ? h("br") : null, hash(sl.assignment.provider, `#/providers/${sl.assignment.provider}`), ` @ ${num(sl.assignment.price)}`] : [k ? h("br") : null, h("span", { class: "muted" }, "unassigned")])),
      auditor ? hash(auditor, `#/providers/${auditor}`) : h("span", { class: "muted" }, "—"),
      st.result ? hash(st.result.trace_root) : h("span", { class: "muted" }, "—"),
      h("span", { class: "bill", "data-stage": i }, amount((bill.byStage.get(i) ?? 0n).toString())),
      h("span", { class: "muted" }, phases.join(" → ") || "—"),
    ];
  });
  return [
    h("h1", null, `Job #${id} `, chip(variant(j.status)), src(J)),
    kv([
      ["Requester", addr(j.requester)],
      ["Payer", addr(j.payer)],
      ["Model", hash(j.spec.model)],
      ["Input", hash(j.spec.input)],
      ["Verification", [variant(j.spec.requirements.verification), `, ${j.spec.requirements.replicas} replica(s)`]],
      ["Max price per mega-op", amount(j.spec.max_price)],
      ["Escrow held", [amount(j.escrow), src(J)]],
      ["Bill (payments)", [h("span", { id: "bill-total" }, amount(bill.total.toString())), src(`/v1/events?from=${j.submitted_at}`)]],
      ["Refunded", [amount(refund.toString()), src(`/v1/events?from=${j.submitted_at}`)]],
      ...(charged > 0n ? [["Charged (broken session, burned)", amount(charged.toString())]] : []),
      ["Submitted at", h("a", { href: `#/blocks/${j.submitted_at}` }, num(j.submitted_at))],
      ["Excluded providers", j.excluded.length ? j.excluded.map((a) => addr(a)) : "none"],
      ["Disputes", disputes.length ? disputes.map((d, i) => [i ? ", " : "", h("a", { href: `#/disputes/${d}` }, `#${d}`)]) : "none"],
    ]),
    h("h2", null, "Stages ", src(J)),
    table("Stages", ["Stage", "Layers", "Ops", "Phase", "Providers @ price", "Auditor", "Trace root", "Bill", "Timeline (event@height)"], stageRows, [2, 7]),
    h("h2", null, "Timeline"),
    eventsTable("Job events", bill.events),
  ];
}

async function disputes() {
  await eventsReady();
  const D = latest("/v1/disputes", ledger.byDispute);
  const list = await api(D);
  return [
    h("h1", null, `Disputes (${counted(D, list.disputes.length)}) `, src(D)),
    table("Disputes", ["Dispute", "Job / stage", "Kind", "Phase", "Defendant", "Challenger", "Round", "Range"], list.disputes.slice().reverse().map((d) => [
      h("a", { href: `#/disputes/${d.id}` }, `#${d.id}`), [h("a", { href: `#/jobs/${d.job}` }, `#${d.job}`), ` / ${d.stage}`], variant(d.kind), chip(variant(d.phase)),
      addr(d.defendant), addr(d.challenger), num(d.game.round), `[${d.game.lo}, ${d.game.hi}]`,
    ]), [6]),
  ];
}

async function dispute(id) {
  const D = `/v1/disputes/${id}`;
  const d = await api(D);
  await eventsReady();
  const evs = ledger.byDispute.get(String(id)) ?? [];
  const rounds = evs.filter((e) => e.kind === "BisectionNarrowed");
  const resolved = evs.find((e) => e.kind === "DisputeResolved");
  const slashes = resolved ? ledger.events.filter((e) => e.kind === "Slashed" && e.height === resolved.height && (e.data.who === d.defendant || e.data.who === d.challenger)) : [];
  const res = resolved ? resolved.data.resolution : null;
  const layer = res && typeof res === "object" && res.Refereed ? res.Refereed.layer : null;
  // The game over the leaves: one row per round, the range still disputed filled.
  const n = d.game.leaves, W = 560, cell = Math.min(40, (W - 80) / Math.max(1, n)), rowH = 26;
  const ranges = [{ lo: 0, hi: n - 1, label: "opened" }, ...rounds.map((e, i) => ({ lo: e.data.lo, hi: e.data.hi, label: `round ${i + 1} @${e.height}` }))];
  const game = s("svg", { class: "chart", viewBox: `0 0 ${W} ${ranges.length * rowH + 30}`, role: "img", "aria-label": `Bisection over ${n} trace leaves: ${rounds.length} rounds` },
    s("title", null, `Bisection over ${n} trace leaves`),
    ranges.map((r, k) => s("g", null,
      s("text", { x: 4, y: k * rowH + 18 }, r.label),
      Array.from({ length: n }, (_, i) => s("rect", {
        class: `cell${i >= r.lo && i <= r.hi ? " in" : ""}${layer !== null && k === ranges.length - 1 && i === layer ? " hit" : ""}`,
        x: (80 + i * cell).toFixed(1), y: k * rowH + 4, width: (cell - 2).toFixed(1), height: rowH - 8,
      }, s("title", null, `leaf ${i}`))))),
    Array.from({ length: n }, (_, i) => s("text", { x: (80 + i * cell + cell / 2 - 4).toFixed(1), y: ranges.length * rowH + 18 }, String(i))));
  return [
    h("h1", null, `Dispute #${id} `, chip(variant(d.phase)), src(D)),
    kv([
      ["Job / stage", [h("a", { href: `#/jobs/${d.job}` }, `#${d.job}`), ` / stage ${d.stage}`]],
      ["Kind", variant(d.kind)],
      ["Defendant", addr(d.defendant)],
      ["Challenger", addr(d.challenger)],
      ["Rounds", [h("span", { id: "rounds" }, num(rounds.length)), ` (game round ${d.game.round}, range [${d.game.lo}, ${d.game.hi}] of ${d.game.leaves} leaves)`, src(D)]],
      ["Refereed layer", layer !== null ? [h("span", { id: "layer" }, String(layer)), resolved ? src(eventSrc(resolved)) : null] : "—"],
      ["Verdict", resolved ? [variant(res), resolved.data.winner ? [" · winner ", addr(resolved.data.winner)] : " · no winner", ` at block ${num(resolved.height)}`, src(eventSrc(resolved))] : "pending"],
      ["Deadline", num(d.deadline)],
      ["Defendant trace root", hash(d.defendant_root)],
      ["Challenger trace root", hash(d.challenger_root)],
    ]),
    h("h2", null, "Bisection rounds"),
    game,
    h("h2", null, "Slash"),
    table("Slash split", ["Who", "Slashed", "To winner", "To requester", "Burned", ""], slashes.map((e) => [
      addr(e.data.who), h("span", { class: "slash" }, amount(e.data.amount)), amount(e.data.to_winner), amount(e.data.to_requester), amount(e.data.burned), src(eventSrc(e)),
    ]), [1, 2, 3, 4]),
    h("h2", null, "Events"),
    eventsTable("Dispute events", [...evs, ...slashes].sort((a, b) => a.height - b.height)),
  ];
}

async function governance() {
  const [ps, params] = await Promise.all([api("/v1/proposals"), api("/v1/params")]);
  await eventsReady();
  return [
    h("h1", null, `Governance (${num(ps.proposals.length)} proposals) `, src("/v1/proposals")),
    table("Proposals", ["Proposal", "Status", "Change", "Yes", "No", "Bonded at snapshot", "Voting ends", "Votes seen"], ps.proposals.slice().reverse().map((p) => [
      [`#${p.id}`, src(`/v1/proposals/${p.id}`)], chip(variant(p.status)), p.change && p.change.key ? `${p.change.key} → ${num(p.change.value)}` : JSON.stringify(p.change), amount(p.yes), amount(p.no), amount(p.bonded_snapshot),
      num(p.voting_ends), num((ledger.byProposal.get(String(p.id)) ?? []).filter((e) => e.kind === "Voted").length),
    ]), [3, 4, 5]),
    h("h2", null, "Current parameters ", src("/v1/params")),
    kv(Object.entries(params.params).map(([k, v]) => [k, typeof v === "object" ? JSON.stringify(v) : /^\d+$/.test(String(v)) ? num(v) : String(v)])),
  ];
}

async function account(a) {
  const A = `/v1/accounts/${a}`;
  const acct = await api(A);
  await eventsReady();
  const evs = ledger.byAddr.get(a) ?? [];
  const granted = evs.filter((e) => e.kind === "MandateGranted");
  const unbonding = evs.filter((e) => e.kind === "UnbondStarted");
  return [
    h("h1", null, "Account ", hash(a)),
    kv([
      ["Balance", [h("span", { id: "balance" }, amount(acct.balance)), src(A)]],
      ["Stake (bonded)", [amount(acct.bonded), src(A)]],
      ["Withdrawable", [amount(acct.withdrawable), src(A)]],
      ["Nonce", [num(acct.nonce), src(A)]],
      ["Provider", acct.is_provider ? h("a", { href: `#/providers/${a}` }, "yes: offer and record") : "no"],
      ["Unbonding started", unbonding.length ? unbonding.map((e) => [amount(e.data.amount), ` at ${e.height} `]) : "none seen"],
    ]),
    h("h2", null, "Mandates granted and held"),
    table("Mandates", ["Mandate", "Role", "Principal", "Agent", "Granted at"], granted.map((e) => [
      [h("a", { href: `/v1/mandates/${e.data.mandate}` }, `#${e.data.mandate}`)], e.data.principal === a ? "granted" : "held",
      addr(e.data.principal), addr(e.data.agent), num(e.height),
    ])),
    h("h2", null, "History"),
    eventsTable("Account history", evs.slice(-300)),
  ];
}

async function block(height) {
  const B = `/v1/blocks/${height}`;
  const b = await api(B);
  await eventsReady();
  const evs = ledger.events.filter((e) => e.height === b.height);
  return [
    h("h1", null, `Block ${num(b.height)} `, src(B)),
    kv([
      ["Time", time(b.timestamp_ms)], ["Digest", hash(b.digest)], ["View", num(b.view)], ["State root", hash(b.state_root)],
      ["Beacon", hash(b.beacon)], ["Transactions", `${num(b.txs.length)} (${num(b.succeeded)} succeeded)`],
      ["Neighbours", [b.height > 1 ? h("a", { href: `#/blocks/${b.height - 1}` }, "← previous") : null, " ", h("a", { href: `#/blocks/${b.height + 1}` }, "next →")]],
    ]),
    h("h2", null, "Transactions"),
    table("Transactions", ["#", "Id"], b.txs.map((t, i) => [num(i), hash(t, `#/txs/${t}`)])),
    h("h2", null, "Events"),
    eventsTable("Block events", evs),
  ];
}

async function tx(id) {
  const T = `/v1/txs/${id}`;
  const r = await api(T);
  if (r.status === "pending") return [h("h1", null, "Transaction ", hash(id), " ", src(T)), h("p", null, chip("pending"), " in the mempool")];
  const ok = r.result && r.result.ok;
  return [
    h("h1", null, "Transaction ", hash(id), " ", src(T)),
    kv([["Status", [chip(r.status), " ", ok ? chip("ok") : chip("Failed: " + JSON.stringify(r.result))]], ["Block", h("a", { href: `#/blocks/${r.height}` }, num(r.height))], ["Index", num(r.index)]]),
    h("h2", null, "Events"),
    eventsTable("Transaction events", r.events.map((raw) => { const k = variant(raw.event ?? raw); return { height: r.height, tx: r.index, kind: k, data: (raw.event ?? raw)[k] ?? {} }; })),
  ];
}

async function search(q) {
  q = q.trim().toLowerCase();
  const found = [];
  if (/^\d+$/.test(q)) {
    const [j, b] = await Promise.all([maybe(`/v1/jobs/${q}`), maybe(`/v1/blocks/${q}`)]);
    if (j) found.push(h("a", { href: `#/jobs/${q}` }, `Job #${q}`));
    if (b) found.push(h("a", { href: `#/blocks/${q}` }, `Block ${num(q)}`));
  } else if (/^[0-9a-f]{64}$/.test(q)) {
    const [t, p] = await Promise.all([maybe(`/v1/txs/${q}`), maybe(`/v1/providers/${q}`)]);
    if (t) found.push(h("a", { href: `#/txs/${q}` }, "Transaction ", q));
    if (p) found.push(h("a", { href: `#/providers/${q}` }, "Provider ", q));
    found.push(h("a", { href: `#/accounts/${q}` }, "Account ", q));
  }
  if (found.length === 1) { location.replace(found[0].getAttribute("href")); return null; }
  return [h("h1", null, `Search: ${q}`), found.length ? h("ul", null, found.map((f) => h("li", null, f))) : h("p", null, "Nothing matches: enter an address or transaction id (64 hex digits), a job id or a block height.")];
}

// ---------------------------------------------------------------- router

const routes = [
  [/^\/?$/, () => overview()],
  [/^\/providers$/, () => providers()],
  [/^\/providers\/([0-9a-f]{64})$/, (m) => provider(m[1])],
  [/^\/jobs(?:\?status=(\w+))?$/, (m) => jobs(m[1])],
  [/^\/jobs\/(\d+)$/, (m) => job(m[1])],
  [/^\/disputes$/, () => disputes()],
  [/^\/disputes\/(\d+)$/, (m) => dispute(m[1])],
  [/^\/governance$/, () => governance()],
  [/^\/accounts\/([0-9a-f]{64})$/, (m) => account(m[1])],
  [/^\/blocks\/(\d+)$/, (m) => block(m[1])],
  [/^\/txs\/([0-9a-f]{64})$/, (m) => tx(m[1])],
  [/^\/search\/(.*)$/, (m) => search(decodeURIComponent(m[1]))],
];

let rendering = 0;
async function render() {
  const path = location.hash.replace(/^#/, "") || "/";
  const started = performance.now();
  const mine = ++rendering;
  document.body.removeAttribute("data-ready");
  for (const a of document.querySelectorAll("nav a")) {
    const href = a.getAttribute("href").slice(1);
    if ((href === "/" && path === "/") || (href !== "/" && path.startsWith(href))) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  let content;
  try {
    const route = routes.find(([re]) => re.test(path));
    content = route ? await route[1](path.match(route[0])) : [h("h1", null, "Not found"), h("p", null, "No page at ", path)];
    if (content === null) return;
  } catch (e) {
    content = [h("h1", null, "Could not load this page"), h("p", { class: "err", role: "alert" }, String(e.message ?? e))];
  }
  if (mine !== rendering) return;
  main.replaceChildren(...[content].flat(Infinity).filter(Boolean));
  const h1 = main.querySelector("h1");
  document.title = `${h1 ? h1.textContent.replace(/\{\}|copy/g, "").trim() : "Agentic"} · Agentic explorer`;
  const ms = performance.now() - started;
  document.body.dataset.ready = path;
  document.body.dataset.renderMs = ms.toFixed(1);
  document.body.dataset.loadMs = performance.now().toFixed(1);
}

document.getElementById("search").addEventListener("submit", (e) => {
  e.preventDefault();
  const q = document.getElementById("q").value.trim();
  if (q) location.hash = `#/search/${encodeURIComponent(q)}`;
});
window.addEventListener("hashchange", () => { render().then(() => main.focus({ preventScroll: true })); });

// The overview follows the chain: re-rendered at most once a second on new blocks.
let pending = false;
ledger.listeners.add(() => {
  const path = location.hash.replace(/^#/, "") || "/";
  if (path !== "/" || pending || !document.body.dataset.ready) return;
  pending = true;
  setTimeout(() => { pending = false; render(); }, 1000);
});

api("/v1/status").then(connect, () => { live.textContent = "offline"; }).finally(render);
