// Live dashboard for the monitor: one WebSocket to /ws, node cards and an event feed.
"use strict";
(function () {
  const FEED_MAX = 500, SEQS_MAX = 100000, ERRORS_MAX = 200, MISSING_MAX = 10000;
  const BACKOFF_MIN_MS = 500, BACKOFF_MAX_MS = 10000, STABLE_MS = 5000;
  const HELLO_TIMEOUT_MS = 10000, RESYNC_SHOW_MS = 1200;
  const TOTALS = "__totals";

  // State read by automated browser tests. `seqs` holds every batch seq as received,
  // duplicates included; `resent` counts re-deliveries we asked for while filling a gap.
  const W = {
    state: "connecting", epoch: null, lastSeq: null, seqs: [], gaps: 0, duplicates: 0,
    resent: 0, connects: 0, events: 0, errors: [],
  };
  window.wschaos = W;

  const S = {
    sock: null, timers: {}, backoff: BACKOFF_MIN_MS, lastRx: 0, heartbeat: 15, pongSeen: false,
    nodes: [], view: "all", wantView: "all", missing: new Set(), gapResume: false, refill: null, resumeUpto: null,
    stats: {}, totals: null, tail: {}, asOf: null, clients: null,
    cards: {}, paused: false, feedRows: 0,
  };

  const $ = (id) => document.getElementById(id);

  // ---------- formatting ----------
  const isNum = (v) => typeof v === "number" && isFinite(v);
  const pad = (n, w) => String(n).padStart(w || 2, "0");
  function fmtInt(v) { return isNum(v) ? Math.round(v).toLocaleString("en-US") : "–"; }

  function fmtBytes(v) {
    if (!isNum(v)) return "–";
    const units = ["B", "kB", "MB", "GB", "TB", "PB"];
    let i = 0;
    while (Math.abs(v) >= 1000 && i < units.length - 1) { v /= 1000; i++; }
    const digits = i === 0 ? 0 : Math.abs(v) < 10 ? 2 : Math.abs(v) < 100 ? 1 : 0;
    return v.toFixed(digits) + " " + units[i];
  }

  function fmtRate(ok, ...bad) {  // share of finished transfers that succeeded
    const total = [ok, ...bad].reduce((a, b) => a + (isNum(b) ? b : 0), 0);
    if (!total) return { text: "–", cls: "" };
    const r = (isNum(ok) ? ok : 0) / total;
    const cls = r >= 0.99 ? "good" : r >= 0.95 ? "warn" : "bad";
    return { text: (r * 100).toFixed(r === 1 ? 0 : 1) + "%", cls };
  }

  function toDate(v) {
    if (v === null || v === undefined || v === "") return null;
    const d = isNum(v) ? new Date(v < 1e12 ? v * 1000 : v) : new Date(String(v));
    return isNaN(d.getTime()) ? null : d;
  }

  function fmtClock(v) {
    const d = toDate(v);
    if (!d) return v ? String(v) : "";
    return [d.getHours(), d.getMinutes(), d.getSeconds()].map((x) => pad(x)).join(":") + "." +
      pad(d.getMilliseconds(), 3);
  }

  function fmtAgo(v) {
    const d = toDate(v);
    if (!d) return "never";
    const s = Math.floor(Math.max(0, Date.now() - d.getTime()) / 1000);
    if (s < 60) return `${s}s ago`;
    if (s < 3600) return `${Math.floor(s / 60)}m ago`;
    if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m ago`;
    return `${Math.floor(s / 86400)}d ago`;
  }

  function short(v, n = 10) {
    const s = v === null || v === undefined ? "" : String(v);
    return s.length > n ? s.slice(0, n) + "…" : s;
  }
  const cssToken = (v) => String(v || "").toLowerCase().replace(/[^a-z0-9_-]/g, "");

  // ---------- small helpers ----------
  function setTimer(name, fn, ms, repeat) {
    clearTimer(name);
    S.timers[name] = repeat ? setInterval(fn, ms) : setTimeout(fn, ms);
  }

  function clearTimer(name) {  // browsers share one id pool for timeouts and intervals
    clearTimeout(S.timers[name]);
    delete S.timers[name];
  }

  function recordError(text) {
    W.errors.push(String(text));
    if (W.errors.length > ERRORS_MAX) W.errors.shift();
    $("sb-err").hidden = false;
    $("sb-errtext").textContent = short(text, 80);
  }

  function send(obj) {
    const s = S.sock;
    if (!s || s.readyState !== WebSocket.OPEN) return;
    try { s.send(JSON.stringify(obj)); } catch (e) { recordError("send: " + (e && e.message)); }
  }

  function showNote(text) {
    $("note-text").textContent = `${fmtClock(Date.now())} — ${text}`;
    $("note").hidden = false;
  }

  const normView = (v) => (Array.isArray(v) ? v.map(String).sort().join(",") : "all");

  // ---------- connection ----------
  function setConnState(state, secs) {
    W.state = state;
    document.body.dataset.conn = state;
    $("conn").className = "pill pill-" + state;
    $("conn-text").textContent = state === "reconnecting" ? `reconnecting in ${secs}s` : state;
  }

  function connect() {
    clearTimer("retry");
    clearTimer("countdown");
    setConnState("connecting");
    const token = new URLSearchParams(location.search).get("token");  // a monitor run with --token
    const query = token ? `?token=${encodeURIComponent(token)}` : "";
    const url = `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}/ws${query}`;
    let sock;
    try { sock = new WebSocket(url); } catch (e) {
      recordError("connect: " + (e && e.message));
      scheduleReconnect();
      return;
    }
    S.sock = sock;
    sock.onopen = () => { if (S.sock === sock) { W.connects++; S.lastRx = Date.now(); } };
    sock.onmessage = (ev) => { if (S.sock === sock) onFrame(ev.data); };
    sock.onclose = () => { if (S.sock === sock) connectionLost(); };
    sock.onerror = () => {};  // a close event always follows
    setTimer("hello", connectionLost, HELLO_TIMEOUT_MS);
  }

  function dropSocket() {
    const sock = S.sock;
    S.sock = null;
    ["hello", "stable", "ping", "watchdog", "resync"].forEach(clearTimer);
    if (!sock) return;
    sock.onopen = sock.onmessage = sock.onclose = sock.onerror = null;
    try { sock.close(); } catch (_) { /* already closed */ }
  }

  function connectionLost() { dropSocket(); scheduleReconnect(); }

  function scheduleReconnect() {
    const base = S.backoff;
    S.backoff = Math.min(base * 2, BACKOFF_MAX_MS);
    const delay = Math.min(BACKOFF_MAX_MS, base * (0.75 + Math.random() * 0.5));
    const due = Date.now() + delay;
    const tick = () => setConnState("reconnecting", Math.max(0, Math.ceil((due - Date.now()) / 1000)));
    tick();
    setTimer("countdown", tick, 250, true);
    setTimer("retry", connect, delay);
  }

  function sendPing() { send({ type: "ping", t: performance.now() }); }
  function watchdog() {  // only once the server has shown it answers pings
    if (!S.pongSeen) return;
    const limitMs = Math.max(10, S.heartbeat * 2.5 + 5) * 1000;
    if (Date.now() - S.lastRx > limitMs) connectionLost();
  }

  // ---------- protocol ----------
  function onFrame(data) {
    S.lastRx = Date.now();
    let msg;
    try { msg = JSON.parse(data); } catch (_) { recordError("unparseable frame"); return; }
    if (!msg || typeof msg !== "object") return;
    const handler = Object.prototype.hasOwnProperty.call(HANDLERS, msg.type) ? HANDLERS[msg.type] : null;
    if (!handler) return;
    try { handler(msg); } catch (e) { recordError(`${msg.type}: ${e && e.message}`); }
  }

  function onInit(m) {
    const prevEpoch = W.epoch, prevSeq = W.lastSeq;
    clearTimer("hello");
    S.heartbeat = isNum(m.heartbeat) && m.heartbeat > 0 ? m.heartbeat : 15;
    S.pongSeen = false;
    S.refill = null;
    setNodes(m.nodes);
    setConnState("live");
    setTimer("stable", () => { S.backoff = BACKOFF_MIN_MS; }, STABLE_MS);
    sendPing();
    setTimer("ping", sendPing, S.heartbeat * 1000, true);
    setTimer("watchdog", watchdog, 1000, true);
    if (normView(m.view) !== normView(S.wantView)) send({ type: "set_view", view: S.wantView });
    else showView(m.view);
    if (prevEpoch !== null && prevSeq !== null && m.epoch === prevEpoch) {
      // Still-missing batches from an unfilled gap are asked for again.
      S.gapResume = S.missing.size > 0;
      S.resumeUpto = Number.isInteger(m.seq) ? m.seq : null;  // the server replays up to its init's seq
      send({ type: "resume", epoch: prevEpoch, since: S.gapResume ? Math.min(...S.missing) - 1 : prevSeq });
    } else {
      S.missing.clear();
      S.gapResume = false;
      S.resumeUpto = null;
      W.epoch = m.epoch === undefined ? null : m.epoch;
      W.lastSeq = Number.isInteger(m.seq) ? m.seq : 0;
      if (prevEpoch !== null) serverRestarted(m.epoch);
    }
    send({ type: "get_stats" });
  }

  function serverRestarted(epoch) {
    showNote(`Server restarted (epoch ${short(epoch, 12)}); statistics reloaded`);
    addMarkerRow("server restarted");
  }

  function onBatch(m) {
    const seq = m.seq;
    if (!Number.isInteger(seq)) return;
    W.seqs.push(seq);
    if (W.seqs.length > SEQS_MAX) W.seqs.shift();
    const events = Array.isArray(m.events) ? m.events : [];
    if (W.lastSeq === null) W.lastSeq = seq - 1;
    if (seq <= W.lastSeq) {
      handleOldBatch(seq, events);
    } else {
      if (seq > W.lastSeq + 1) noteGap(W.lastSeq + 1, seq - 1);
      W.lastSeq = seq;
      acceptEvents(events);
    }
    if (S.refill && seq >= S.refill.to) S.refill = null;
  }

  function handleOldBatch(seq, events) {
    if (S.missing.delete(seq)) acceptEvents(events);
    else if (S.refill && seq >= S.refill.from && seq <= S.refill.to) W.resent++;
    else W.duplicates++;
  }

  function noteGap(from, to) {
    W.gaps++;
    for (let s = from; s <= to && S.missing.size < MISSING_MAX; s++) S.missing.add(s);
    S.gapResume = true;
    // A live batch can overtake the replay of the resume sent on connect, which already asks for
    // everything up to the init's seq: asking again would only bring the same batches twice.
    if (S.resumeUpto !== null && to <= S.resumeUpto) return;
    send({ type: "resume", epoch: W.epoch, since: from - 1 });
  }

  function onResumed(m) {
    if (!S.gapResume || !Number.isInteger(m.from_seq) || !Number.isInteger(m.to_seq)) return;
    S.gapResume = false;
    if (m.to_seq < m.from_seq) return;
    const r = S.refill || { from: m.from_seq, to: m.to_seq };
    S.refill = { from: Math.min(r.from, m.from_seq), to: Math.max(r.to, m.to_seq) };
  }

  function onResyncRequired(m) {
    const epochChanged = m.epoch !== undefined && W.epoch !== null && m.epoch !== W.epoch;
    if (m.epoch !== undefined) W.epoch = m.epoch;
    if (Number.isInteger(m.seq)) W.lastSeq = m.seq;
    S.missing.clear(); S.refill = null; S.gapResume = false;
    setConnState("resyncing");
    setTimer("resync", endResync, RESYNC_SHOW_MS);
    if (epochChanged || m.reason === "epoch_changed") serverRestarted(m.epoch);
    send({ type: "get_stats" });
  }

  function endResync() { if (S.sock && W.state === "resyncing") setConnState("live"); }

  function onStats(m) {
    // Merge: a filtered view only reports its own nodes; the others keep their last values (dimmed).
    if (m.nodes && typeof m.nodes === "object") Object.assign(S.stats, m.nodes);
    if (m.totals && typeof m.totals === "object") S.totals = m.totals;
    if (Number.isInteger(m.as_of_seq)) S.asOf = m.as_of_seq;
    for (const n of Object.keys(S.stats)) if (!S.nodes.includes(n)) addNode(n);
    renderCards();
  }

  function onConnectionStatus(m) {
    if (m.nodes && typeof m.nodes === "object") S.tail = m.nodes;
    if (isNum(m.clients)) S.clients = m.clients;
    $("clients").textContent = "clients " + fmtInt(S.clients);
    renderCards();
  }

  function onPong(m) {
    if (!isNum(m.t)) return;
    const rtt = performance.now() - m.t;
    S.pongSeen = true;
    if (rtt >= 0 && rtt < 600000) $("rtt").textContent = `rtt ${rtt.toFixed(0)} ms`;
  }

  function onServerError(m) { recordError(`${m.code || "error"}: ${m.message || ""}`); }
  const HANDLERS = {
    init: onInit, log_entry_batch: onBatch, stats_update: onStats, connection_status: onConnectionStatus,
    resumed: onResumed, resync_required: onResyncRequired, view_changed: (m) => showView(m.view),
    pong: onPong, error: onServerError,
  };

  // ---------- nodes and view selector ----------
  function setNodes(list) { if (Array.isArray(list)) list.map(String).forEach(addNode); }

  function addNode(name) {
    if (S.nodes.includes(name)) return;
    S.nodes.push(name);
    $("view").appendChild(new Option(name, name));
    ensureCard(name, name);
  }

  function showView(view) {
    const changed = normView(view) !== normView(S.view);
    S.view = Array.isArray(view) ? view.map(String) : "all";
    if (changed) addMarkerRow("view: " + (S.view === "all" ? "all nodes" : S.view.join(", ")));
    $("view").value = Array.isArray(S.view) && S.view.length === 1 ? S.view[0] : "all";
    renderCards();
  }

  function onViewSelect() {
    const v = $("view").value;
    S.wantView = v === "all" ? "all" : [v];
    send({ type: "set_view", view: S.wantView });
  }

  // ---------- cards ----------
  const OPS = [  // [ok, failed, canceled or null, rate field]; fields match data-f in #card-template
    ["uploads", "upload_failed", "upload_canceled", "up_rate"],
    ["downloads", "download_failed", "download_canceled", "down_rate"],
    ["audits", "audit_failed", null, "audit_rate"],
    ["repairs", "repair_failed", null, "repair_rate"],
  ];
  const COUNTERS = OPS.flatMap((r) => r.slice(0, 3)).filter(Boolean).concat("events");

  function ensureCard(key, title) {
    if (S.cards[key]) return S.cards[key];
    const el = document.createElement("article");
    el.className = "card" + (key === TOTALS ? " card-totals" : "");
    el.appendChild($("card-template").content.cloneNode(true));
    const f = {};
    el.querySelectorAll("[data-f]").forEach((x) => { f[x.dataset.f] = x; });
    f.name.textContent = title;
    const container = $("cards");
    if (key === TOTALS) container.prepend(el); else container.appendChild(el);
    S.cards[key] = { el, f, lastTs: null };
    return S.cards[key];
  }

  function setRate(td, rate) { td.textContent = rate.text; td.className = "rate " + rate.cls; }

  function fillCard(card, s) {
    const f = card.f;
    COUNTERS.forEach((k) => { f[k].textContent = fmtInt(s[k]); });
    for (const [ok, failed, canceled, rate] of OPS) {
      setRate(f[rate], fmtRate(s[ok], s[failed], canceled ? s[canceled] : 0));
    }
    f.bytes_in.textContent = fmtBytes(s.bytes_in);
    f.bytes_out.textContent = fmtBytes(s.bytes_out);
    card.lastTs = s.last_event_ts === undefined ? card.lastTs : s.last_event_ts;
    f.last.textContent = fmtAgo(card.lastTs);
    f.last.title = toDate(card.lastTs) ? toDate(card.lastTs).toLocaleString() : "";
  }

  function fillTail(card, t) {
    const state = t && t.state ? String(t.state) : "unknown";
    card.f.tail.textContent = state;
    card.f.tail.className = "tail tail-" + cssToken(state);
    card.f.tail.title = t ? `${t.path || ""}\nlast line: ${fmtAgo(t.last_line_at)}` : "";
  }

  function fillTotalsTail(card) {
    const states = Object.values(S.tail).map((t) => (t && t.state) || "unknown");
    const tailing = states.filter((s) => s === "tailing").length;
    card.f.tail.textContent = states.length ? `${tailing}/${states.length} tailing` : "–";
    const allTailing = states.length > 0 && tailing === states.length;
    card.f.tail.className = "tail " + (allTailing ? "tail-tailing" : "tail-waiting");
  }

  function renderCards() {
    const inView = (n) => S.view === "all" || (Array.isArray(S.view) && S.view.includes(n));
    for (const n of S.nodes) {
      const card = ensureCard(n, n);
      fillCard(card, S.stats[n] || {});
      fillTail(card, S.tail[n]);
      card.el.classList.toggle("dim", !inView(n));
    }
    const tot = ensureCard(TOTALS, "Totals");
    fillCard(tot, S.totals || {});
    fillTotalsTail(tot);
    tot.f.name.textContent = S.view === "all" ? "Totals · all nodes" : "Totals · " + S.view.join(", ");
  }

  function refreshAges() {
    for (const card of Object.values(S.cards)) card.f.last.textContent = fmtAgo(card.lastTs);
  }

  // ---------- feed ----------
  function cell(tr, text, cls, title) {
    const td = document.createElement("td");
    td.textContent = text === null || text === undefined ? "" : String(text);
    if (cls) td.className = cls;
    if (title) td.title = String(title);
    tr.appendChild(td);
  }

  function eventRow(ev) {
    const tr = document.createElement("tr");
    tr.className = `lv-${cssToken(ev.level)} st-${cssToken(ev.status)}`;
    const detail = ev.error || ev.reason || ev.message || "";
    cell(tr, fmtClock(ev.ts), "c-time", ev.ts);
    cell(tr, ev.node, "c-node");
    cell(tr, ev.level, "c-level");
    cell(tr, ev.action || ev.category || ev.component, "c-action", ev.category);
    cell(tr, ev.status, "c-status");
    cell(tr, isNum(ev.size) ? fmtBytes(ev.size) : "", "c-size num", ev.size);
    cell(tr, short(ev.piece_id, 10), "c-piece mono", ev.piece_id);
    cell(tr, short(ev.satellite_id, 10), "c-sat mono", ev.satellite_id);
    cell(tr, detail, "c-detail", [ev.message, ev.remote, ev.error].filter(Boolean).join("\n"));
    return tr;
  }

  function acceptEvents(events) {
    W.events += events.length;
    if (S.paused || !events.length) return;
    const frag = document.createDocumentFragment();  // newest on top
    for (const ev of events.slice(-FEED_MAX).reverse()) {
      if (ev && typeof ev === "object") frag.appendChild(eventRow(ev));
    }
    prependRows(frag);
  }

  function addMarkerRow(text) {
    const tr = document.createElement("tr");
    tr.className = "marker";
    cell(tr, `${fmtClock(Date.now())} — ${text}`);
    tr.firstChild.colSpan = 9;
    prependRows(tr);
  }

  function prependRows(node) {
    const body = $("feed");
    body.insertBefore(node, body.firstChild);
    while (body.rows.length > FEED_MAX) body.deleteRow(body.rows.length - 1);
    updateFeedCount();
  }

  function updateFeedCount() {
    S.feedRows = $("feed").rows.length;
    $("feed-empty").hidden = S.feedRows > 0;
  }
  function clearFeed() { $("feed").textContent = ""; updateFeedCount(); }

  // ---------- status bar ----------
  function renderStatusBar() {
    const orDash = (v) => (v === null ? "–" : fmtInt(v));
    $("sb-epoch").textContent = W.epoch === null ? "–" : short(W.epoch, 12);
    $("sb-seq").textContent = orDash(W.lastSeq);
    $("sb-asof").textContent = orDash(S.asOf);
    for (const k of ["gaps", "duplicates", "resent", "connects", "events"]) {
      $("sb-" + k).textContent = fmtInt(W[k]);
    }
    $("feed-count").textContent = `${fmtInt(S.feedRows)} shown`;
  }

  // ---------- start ----------
  function start() {
    $("view").addEventListener("change", onViewSelect);
    $("pause").addEventListener("change", (e) => { S.paused = e.target.checked; });
    $("clear").addEventListener("click", clearFeed);
    $("note-close").addEventListener("click", () => { $("note").hidden = true; });
    renderCards();
    setInterval(renderStatusBar, 250);
    setInterval(refreshAges, 1000);
    connect();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
