/*
 * dashboard.js: twopcd's live dashboard.
 *
 * Every 2 seconds it reads twopcd's own API -- GET /healthz, /metrics,
 * /v1/in-doubt and /v1/recent-aborts -- and redraws the page: status and
 * in-flight count, the participants, throughput and latency charts, the
 * prepared transactions in doubt and the recent aborts. Throughput and
 * latency are computed here from successive /metrics scrapes (counter and
 * histogram deltas); about 5 minutes of points are kept in memory.
 *
 * Plain DOM, no framework, nothing fetched from anywhere but twopcd. Values
 * from the server (GIDs, error messages) only ever enter the page as text,
 * never as HTML. An endpoint this twopcd does not have (404) shows as "not
 * available"; a 401 shows a form asking for a bearer token, kept in this
 * tab's sessionStorage and sent as Authorization: Bearer.
 */
"use strict";

(function () {
	const POLL_MS = 2000;
	const HISTORY_MS = 5 * 60 * 1000;
	const MIN_SPAN_MS = 20 * 1000;
	const FETCH_TIMEOUT_MS = 5000;
	const TOKEN_KEY = "twopcd-token";
	const SVG_NS = "http://www.w3.org/2000/svg";
	const JSON_TYPE = "application/json";
	const TEXT_TYPE = "text/plain";

	const state = {
		token: loadToken(),
		prev: null, // the previous /metrics scrape (see readScrape), with .at (ms)
		points: [], // one per scrape interval: {t, committed, aborted, p50, p99, mean}
		timer: null,
		running: false,
		again: false, // poll again as soon as the running poll ends
		polls: 0,
	};

	const $ = (id) => document.getElementById(id);

	function loadToken() {
		try {
			return sessionStorage.getItem(TOKEN_KEY);
		} catch (e) {
			return null; // storage disabled: the token lasts until the page reloads
		}
	}

	function saveToken(token) {
		state.token = token;
		try {
			if (token === null) sessionStorage.removeItem(TOKEN_KEY);
			else sessionStorage.setItem(TOKEN_KEY, token);
		} catch (e) {
			/* kept in memory only */
		}
	}

	/* ---- fetching ------------------------------------------------------- */

	/* GET PATH, relative to the page (so that the dashboard also works behind
	 * a proxy that serves twopcd under a path prefix). Resolves to
	 * {kind: "ok", body, at} (at: performance.now() when the answer came),
	 * {kind: "auth"} on 401, {kind: "absent"} on 404, or {kind: "error",
	 * message}. Never rejects. */
	async function get(path, accept) {
		const headers = { Accept: accept };
		const ctl = new AbortController();
		const timer = setTimeout(() => ctl.abort(), FETCH_TIMEOUT_MS);

		if (state.token) headers.Authorization = "Bearer " + state.token;
		try {
			const r = await fetch(path, { headers, cache: "no-store", signal: ctl.signal });
			const at = performance.now();
			if (r.status === 401) return { kind: "auth" };
			if (r.status === 404) return { kind: "absent" };
			const text = await r.text();
			if (!r.ok) return { kind: "error", message: `/${path}: HTTP ${r.status}${problemDetail(text)}` };
			return { kind: "ok", body: accept === JSON_TYPE ? JSON.parse(text) : text, at };
		} catch (e) {
			const why = e.name === "AbortError" ? `no answer within ${FETCH_TIMEOUT_MS / 1000} s` : e.message;
			return { kind: "error", message: `/${path}: ${why}` };
		} finally {
			clearTimeout(timer);
		}
	}

	function problemDetail(text) {
		try {
			const p = JSON.parse(text);
			return p && typeof p.detail === "string" ? ": " + p.detail : "";
		} catch (e) {
			return "";
		}
	}

	/* ---- the Prometheus text format ------------------------------------- */

	function parseValue(s) {
		if (s === undefined || s === "") return undefined;
		if (s === "+Inf" || s === "Inf") return Infinity;
		if (s === "-Inf") return -Infinity;
		if (s === "NaN") return NaN;
		const v = Number(s);
		return Number.isNaN(v) ? undefined : v;
	}

	/* One sample line, `name{k="v",...} value [timestamp]`, as
	 * {name, labels, value}; null when the line cannot be read. */
	function parseSample(line) {
		const labels = {};
		let i = 0;

		while (i < line.length && /[A-Za-z0-9_:]/.test(line[i])) i++;
		const name = line.slice(0, i);
		if (name === "" || /[0-9]/.test(name[0])) return null;
		while (line[i] === " " || line[i] === "\t") i++;
		if (line[i] === "{") {
			i++;
			for (;;) {
				while (line[i] === " " || line[i] === "\t" || line[i] === ",") i++;
				if (line[i] === "}") {
					i++;
					break;
				}
				const start = i;
				while (i < line.length && /[A-Za-z0-9_]/.test(line[i])) i++;
				const key = line.slice(start, i);
				while (line[i] === " ") i++;
				if (key === "" || line[i] !== "=") return null;
				i++;
				while (line[i] === " ") i++;
				if (line[i] !== '"') return null;
				i++;
				let value = "";
				while (i < line.length && line[i] !== '"') {
					if (line[i] === "\\" && i + 1 < line.length) {
						value += line[i + 1] === "n" ? "\n" : line[i + 1];
						i += 2;
					} else {
						value += line[i++];
					}
				}
				if (line[i] !== '"') return null;
				i++;
				labels[key] = value;
			}
		}
		const value = parseValue(line.slice(i).trim().split(/\s+/)[0]);
		return value === undefined ? null : { name, labels, value };
	}

	/* The text exposition format (0.0.4): comments, HELP and TYPE lines and
	 * lines it cannot read are skipped. */
	function parseMetrics(text) {
		const out = [];
		for (const raw of text.split("\n")) {
			const line = raw.trim();
			if (line === "" || line[0] === "#") continue;
			const s = parseSample(line);
			if (s !== null) out.push(s);
		}
		return out;
	}

	/* The samples the dashboard uses, summed over any labels it does not
	 * look at. buckets: [[le, cumulative count]] by ascending le. */
	function readScrape(samples) {
		const s = { committed: null, aborted: null, sum: null, count: null, buckets: [] };
		const buckets = new Map();
		const add = (a, v) => (a === null ? v : a + v);

		for (const m of samples) {
			if (!Number.isFinite(m.value)) continue;
			switch (m.name) {
				case "twopc_transactions_total":
					if (m.labels.outcome === "committed") s.committed = add(s.committed, m.value);
					else if (m.labels.outcome === "aborted") s.aborted = add(s.aborted, m.value);
					break;
				case "twopc_transaction_duration_seconds_bucket": {
					const le = parseValue(m.labels.le);
					if (le !== undefined && !Number.isNaN(le)) buckets.set(le, (buckets.get(le) || 0) + m.value);
					break;
				}
				case "twopc_transaction_duration_seconds_sum":
					s.sum = add(s.sum, m.value);
					break;
				case "twopc_transaction_duration_seconds_count":
					s.count = add(s.count, m.value);
					break;
			}
		}
		s.buckets = [...buckets.entries()].sort((a, b) => a[0] - b[0]);
		return s;
	}

	/* The q-quantile of a histogram given as cumulative [[le, count]], the way
	 * Prometheus's histogram_quantile() estimates it: linear within the
	 * bucket that holds the rank, the bucket's lower bound being the previous
	 * le (0 for the first); in the +Inf bucket, the highest finite bound. */
	function quantile(q, buckets) {
		if (buckets.length === 0) return null;
		const total = buckets[buckets.length - 1][1];
		if (!(total > 0)) return null;
		const rank = q * total;
		let lo = 0;
		let below = 0;
		for (const [le, cum] of buckets) {
			if (cum >= rank) {
				if (le === Infinity) return lo;
				if (cum === below) return le;
				return lo + ((le - lo) * (rank - below)) / (cum - below);
			}
			lo = le;
			below = cum;
		}
		return lo;
	}

	/* One chart point from two scrapes DT seconds apart. A counter that went
	 * down means twopcd restarted: the new values are then the deltas. */
	function intervalPoint(prev, cur, dt, t) {
		const reset =
			(cur.count !== null && prev.count !== null && cur.count < prev.count) ||
			(cur.committed !== null && prev.committed !== null && cur.committed < prev.committed) ||
			(cur.aborted !== null && prev.aborted !== null && cur.aborted < prev.aborted);
		const delta = (a, b) => (b === null ? null : reset || a === null ? b : b - a);
		const prevBucket = new Map(prev.buckets);
		const point = { t, committed: null, aborted: null, p50: null, p99: null, mean: null };

		const dc = delta(prev.committed, cur.committed);
		const da = delta(prev.aborted, cur.aborted);
		if (dc !== null) point.committed = dc / dt;
		if (da !== null) point.aborted = da / dt;

		let running = 0; // cumulative counts stay monotonic even if a scrape raced an update
		const deltas = cur.buckets.map(([le, cum]) => {
			running = Math.max(running, delta(prevBucket.has(le) ? prevBucket.get(le) : 0, cum));
			return [le, running];
		});
		const p50 = quantile(0.5, deltas);
		const p99 = quantile(0.99, deltas);
		if (p50 !== null) point.p50 = p50 * 1000;
		if (p99 !== null) point.p99 = p99 * 1000;
		const dsum = delta(prev.sum, cur.sum);
		const dcount = delta(prev.count, cur.count);
		if (dsum !== null && dcount > 0) point.mean = (dsum / dcount) * 1000;
		return point;
	}

	function addScrape(text, at) {
		const cur = readScrape(parseMetrics(text));
		const now = Date.now();

		cur.at = at;
		if (state.prev !== null && at > state.prev.at) {
			state.points.push(intervalPoint(state.prev, cur, (at - state.prev.at) / 1000, now));
			while (state.points.length > 0 && state.points[0].t < now - HISTORY_MS) state.points.shift();
		}
		state.prev = cur;
	}

	/* ---- DOM helpers ---------------------------------------------------- */

	/* An element with optional class, text and attributes (data-testid and
	 * the like); text is always set as text. */
	function el(tag, opts = {}, children = []) {
		const e = document.createElement(tag);
		if (opts.cls) e.className = opts.cls;
		if (opts.text !== undefined && opts.text !== null) e.textContent = String(opts.text);
		if (opts.title) e.title = opts.title;
		for (const [k, v] of Object.entries(opts.attrs || {})) e.setAttribute(k, v);
		for (const c of children) e.append(c);
		return e;
	}

	function td(text, testid, cls) {
		return el("td", { text, cls, attrs: testid ? { "data-testid": testid } : {} });
	}

	function messageRow(ncols, text, testid) {
		const cell = el("td", { text, cls: "empty", attrs: { colspan: String(ncols), "data-testid": testid } });
		return el("tr", {}, [cell]);
	}

	const dash = (v) => (v === null || v === undefined ? "–" : v);

	function fmtNumber(v, digits) {
		if (v === null || v === undefined || !Number.isFinite(v)) return "–";
		if (v >= 100) return v.toFixed(0);
		if (v >= 10) return v.toFixed(Math.min(digits, 1));
		return v.toFixed(digits);
	}

	function fmtAge(s) {
		if (typeof s !== "number" || !Number.isFinite(s)) return "–";
		s = Math.max(0, Math.round(s));
		if (s < 60) return `${s} s`;
		if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
		if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
		return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
	}

	function fmtSpan(ms) {
		const s = Math.round(ms / 1000);
		return s < 120 ? `${s} s` : `${Math.round(s / 60)} min`;
	}

	function fmtClock(d) {
		const p = (n) => String(n).padStart(2, "0");
		return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
	}

	function yesNo(b, testid) {
		return td(b ? "yes" : "no", testid, b ? "yes" : "no");
	}

	function tag(value, testid) {
		const cell = el("td", { attrs: { "data-testid": testid } });
		if (value === null || value === undefined) cell.textContent = "–";
		else cell.append(el("span", { text: value, cls: "tag " + String(value).replace(/[^a-z_]/g, "") }));
		return cell;
	}

	/* What a section shows instead of data when its endpoint failed. */
	function unavailable(res, path) {
		if (res.kind === "absent") return `not available: this twopcd has no ${path}`;
		if (res.kind === "auth") return `needs a token: ${path} answered 401`;
		return `not available: ${res.message}`;
	}

	/* ---- rendering ------------------------------------------------------ */

	function renderHeader(health) {
		const status = $("status");
		const banner = $("banner");

		if (health.kind === "ok") {
			status.textContent = health.body.status;
			status.className = "badge " + health.body.status;
			$("in-flight").textContent = String(health.body.in_flight);
			banner.hidden = true;
		} else {
			status.textContent = "unreachable";
			status.className = "badge unreachable";
			$("in-flight").textContent = "–";
			banner.textContent =
				health.kind === "error" ? `twopcd does not answer: ${health.message}` : unavailable(health, "GET /healthz");
			banner.hidden = false;
		}
		$("updated").textContent = "updated " + fmtClock(new Date());
		$("forget-token").hidden = !state.token;
	}

	function renderParticipants(health, doubt) {
		const body = $("participants");
		const parts = health.kind === "ok" ? health.body.participants || {} : {};
		const prepared = doubt.kind === "ok" ? doubt.body.participants || {} : null;
		const rows = [];

		for (const name of Object.keys(parts).sort()) {
			const p = parts[name];
			const d = prepared ? prepared[name] : null;
			const id = (what) => `participant-${name}-${what}`;
			const row = el("tr", { attrs: { "data-testid": "participant-row", "data-name": name } }, [
				td(name, id("name")),
				yesNo(p.reachable, id("reachable")),
				td(p.open, id("open"), "num"),
				td(p.busy, id("busy"), "num"),
				td(p.pool_size, id("pool-size"), "num"),
				td(p.waiters, id("waiters"), "num"),
				td(d && d.reachable !== false ? (d.prepared || []).length : "–", id("prepared"), "num"),
				td(d && d.reachable !== false ? dash(d.oldest_xid_age) : "–", id("oldest-xid-age"), "num"),
				td(p.error || "", id("error"), "error"),
			]);
			rows.push(row);
		}
		if (rows.length === 0) rows.push(messageRow(9, unavailable(health, "GET /healthz"), "participants-unavailable"));
		body.replaceChildren(...rows);
	}

	function renderInDoubt(doubt) {
		const body = $("in-doubt");
		const count = $("in-doubt-count");
		const rows = [];
		const all = [];

		if (doubt.kind !== "ok") {
			body.replaceChildren(messageRow(11, unavailable(doubt, "GET /v1/in-doubt"), "in-doubt-unavailable"));
			count.textContent = "";
			return;
		}
		const parts = doubt.body.participants || {};
		for (const name of Object.keys(parts).sort()) {
			const p = parts[name];
			if (p.reachable === false) {
				const cell = el("td", {
					text: `${name} is unreachable: ${p.error || "no reason given"}`,
					cls: "error",
					attrs: { colspan: "11" },
				});
				rows.push(el("tr", { attrs: { "data-testid": "in-doubt-unreachable", "data-participant": name } }, [cell]));
			}
			for (const x of p.prepared || []) all.push([name, x]);
		}
		all.sort((a, b) => (b[1].age_s || 0) - (a[1].age_s || 0));
		for (const [name, x] of all) {
			rows.push(
				el("tr", { attrs: { "data-testid": "in-doubt-row", "data-gid": x.gid, "data-participant": name } }, [
					td(name, "in-doubt-participant"),
					td(x.gid, "in-doubt-gid", "mono"),
					yesNo(x.ours, "in-doubt-ours"),
					td(dash(x.txn_id), "in-doubt-txn", "mono"),
					td(dash(x.owner), "in-doubt-owner"),
					td(dash(x.database), "in-doubt-database"),
					td(fmtAge(x.age_s), "in-doubt-age", "num"),
					td(dash(x.xid_age), "in-doubt-xid-age", "num"),
					tag(x.decision, "in-doubt-decision"),
					tag(x.sweeper_action, "in-doubt-action"),
					td(dash(x.why), "in-doubt-why"),
				]),
			);
		}
		if (all.length === 0) rows.push(messageRow(11, "no prepared transactions", "in-doubt-empty"));
		count.textContent = `${all.length} prepared`;
		body.replaceChildren(...rows);
	}

	function renderAborts(aborts) {
		const body = $("aborts");
		const summary = $("abort-summary");
		const rows = [];
		const byReason = new Map();

		if (aborts.kind !== "ok") {
			body.replaceChildren(messageRow(6, unavailable(aborts, "GET /v1/recent-aborts"), "aborts-unavailable"));
			summary.textContent = "";
			return;
		}
		for (const a of aborts.body.aborts || []) {
			const at = new Date(a.at);
			byReason.set(a.reason, (byReason.get(a.reason) || 0) + 1);
			const reason = el("td", { attrs: { "data-testid": "abort-reason" } }, [
				el("span", { text: a.reason, cls: "tag reason" }),
			]);
			rows.push(
				el("tr", { attrs: { "data-testid": "abort-row", "data-id": a.id } }, [
					el("td", {
						text: Number.isNaN(at.getTime()) ? a.at : fmtClock(at),
						title: a.at,
						cls: "num",
						attrs: { "data-testid": "abort-at" },
					}),
					td(a.id, "abort-id", "mono"),
					reason,
					td(dash(a.participant), "abort-participant"),
					td(dash(a.sqlstate), "abort-sqlstate", "mono"),
					td(a.message, "abort-message"),
				]),
			);
		}
		if (rows.length === 0) rows.push(messageRow(6, "no aborts since twopcd started", "abort-empty"));
		summary.textContent = [...byReason.entries()]
			.sort((a, b) => b[1] - a[1])
			.map(([r, n]) => `${r} ${n}`)
			.join(" · ");
		body.replaceChildren(...rows);
	}

	/* ---- charts ------------------------------------------------------------ */

	function svg(tag, attrs = {}, text) {
		const e = document.createElementNS(SVG_NS, tag);
		for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
		if (text !== undefined) e.textContent = text;
		return e;
	}

	/* 1, 2 or 5 times a power of ten, at least V. */
	function niceCeil(v) {
		if (!(v > 0)) return 1;
		const p = Math.pow(10, Math.floor(Math.log10(v)));
		for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
		return 10 * p;
	}

	/* A line chart of state.points' fields SERIES into the element PLOT: the
	 * x axis spans the points kept (20 s at least, 5 minutes at most), gaps
	 * where a value is missing. */
	function drawChart(plot, series, fmtY) {
		const w = Math.max(200, plot.clientWidth);
		const h = Math.max(100, plot.clientHeight);
		const left = 44;
		const right = 8;
		const top = 8;
		const bottom = 20;
		const now = Date.now();
		const pts = state.points;
		const root = svg("svg", { width: w, height: h, viewBox: `0 0 ${w} ${h}`, role: "img" });

		if (pts.length === 0) {
			root.append(svg("text", { x: w / 2, y: h / 2, "text-anchor": "middle", class: "empty" }, "collecting data…"));
			plot.replaceChildren(root);
			return;
		}
		const span = Math.min(HISTORY_MS, Math.max(MIN_SPAN_MS, now - pts[0].t));
		let max = 0;
		for (const p of pts) for (const s of series) if (p[s] !== null && p[s] > max) max = p[s];
		max = niceCeil(max * 1.05);
		const x = (t) => left + ((w - left - right) * (t - (now - span))) / span;
		const y = (v) => top + (h - top - bottom) * (1 - v / max);

		for (const f of [0, 0.5, 1]) {
			const v = max * f;
			root.append(svg("line", { x1: left, x2: w - right, y1: y(v), y2: y(v), class: "grid" }));
			root.append(svg("text", { x: left - 6, y: y(v) + 4, "text-anchor": "end" }, fmtY(v)));
		}
		root.append(svg("text", { x: left, y: h - 4 }, `−${fmtSpan(span)}`));
		root.append(svg("text", { x: w - right, y: h - 4, "text-anchor": "end" }, "now"));
		for (const s of series) {
			let seg = [];
			const flush = () => {
				if (seg.length === 1) seg.push([seg[0][0] + 1, seg[0][1]]);
				if (seg.length > 1)
					root.append(svg("polyline", { points: seg.map((p) => p.join(",")).join(" "), class: "line " + s }));
				seg = [];
			};
			for (const p of pts) {
				if (p[s] === null) flush();
				else seg.push([x(p.t).toFixed(1), y(p[s]).toFixed(1)]);
			}
			flush();
		}
		plot.replaceChildren(root);
	}

	function renderCharts(metrics) {
		const last = state.points.length > 0 ? state.points[state.points.length - 1] : null;
		const show = (id, v, digits) => ($(id).textContent = last === null ? "–" : fmtNumber(v, digits));

		if (metrics.kind !== "ok") {
			const text = unavailable(metrics, "GET /metrics");
			for (const id of ["throughput-plot", "latency-plot"])
				$(id).replaceChildren(el("p", { text, cls: "note", attrs: { "data-testid": "metrics-unavailable" } }));
			for (const id of ["throughput-committed", "throughput-aborted", "latency-p50", "latency-p99", "latency-mean"])
				$(id).textContent = "–";
			return;
		}
		const axis = (v) => (v === 0 ? "0" : fmtNumber(v, 1));
		drawChart($("throughput-plot"), ["committed", "aborted"], axis);
		drawChart($("latency-plot"), ["p50", "p99", "mean"], axis);
		show("throughput-committed", last && last.committed, 1);
		show("throughput-aborted", last && last.aborted, 1);
		show("latency-p50", last && last.p50, 2);
		show("latency-p99", last && last.p99, 2);
		show("latency-mean", last && last.mean, 2);
	}

	function renderAuth(results) {
		const form = $("auth");
		const needed = results.some((r) => r.kind === "auth");

		form.hidden = !needed;
		$("auth-note").textContent = needed && state.token ? "twopcd refused this token." : "";
	}

	/* ---- the poll loop ---------------------------------------------------- */

	async function poll() {
		const started = performance.now();

		state.running = true;
		state.again = false;
		const [health, metrics, doubt, aborts] = await Promise.all([
			get("healthz", JSON_TYPE),
			get("metrics", TEXT_TYPE),
			get("v1/in-doubt", JSON_TYPE),
			get("v1/recent-aborts", JSON_TYPE),
		]);
		try {
			if (metrics.kind === "ok") addScrape(metrics.body, metrics.at);
			else state.prev = null; // rates need two consecutive scrapes
			renderHeader(health);
			renderParticipants(health, doubt);
			renderCharts(metrics);
			renderInDoubt(doubt);
			renderAborts(aborts);
			renderAuth([health, metrics, doubt, aborts]);
		} finally {
			state.running = false;
			state.polls++;
			document.body.dataset.polls = String(state.polls);
			schedule(state.again ? 0 : Math.max(0, POLL_MS - (performance.now() - started)));
		}
	}

	function schedule(ms) {
		clearTimeout(state.timer);
		state.timer = setTimeout(poll, ms);
	}

	/* Poll now (after the running poll, if one is running). */
	function pollNow() {
		if (state.running) state.again = true;
		else schedule(0);
	}

	function start() {
		$("auth").addEventListener("submit", (ev) => {
			ev.preventDefault();
			const input = $("auth-token");
			const token = input.value.trim();
			if (token === "") return;
			saveToken(token);
			input.value = "";
			pollNow();
		});
		$("forget-token").addEventListener("click", () => {
			saveToken(null);
			pollNow();
		});
		poll();
	}

	/* The pure parts, for tests/dashboard-unit.js (run in the page by
	 * tests/check_dashboard.c). */
	window.twopcDashboard = Object.freeze({ parseMetrics, readScrape, quantile, intervalPoint });

	if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
	else start();
})();
