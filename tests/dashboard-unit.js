/*
 * dashboard-unit.js: the dashboard's arithmetic, checked in the browser.
 *
 * tests/check_dashboard.c evaluates this expression in the page twopcd
 * serves (headless Chromium) and fails with whatever it returns: a list of
 * problems, empty when the Prometheus text parser, the histogram quantile
 * estimate and the rates computed from two scrapes all do what they should.
 * The functions are those dashboard.js exposes as window.twopcDashboard.
 */
(() => {
	const d = window.twopcDashboard;
	const bad = [];
	const near = (what, got, want) => {
		const ok =
			got === want ||
			(typeof got === "number" && typeof want === "number" && Math.abs(got - want) <= 1e-9 * Math.max(1, Math.abs(want)));
		if (!ok) bad.push(`${what}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
	};
	const same = (what, got, want) => {
		if (JSON.stringify(got) !== JSON.stringify(want))
			bad.push(`${what}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
	};

	if (!d) return ["window.twopcDashboard is missing"];

	/* The text format: comments, HELP/TYPE, blank lines, timestamps, escaped
	 * label values, +Inf/-Inf/NaN, exponents; lines it cannot read skipped. */
	const text = [
		"# HELP twopc_transactions_total Transactions by outcome.",
		"# TYPE twopc_transactions_total counter",
		'twopc_transactions_total{outcome="committed"} 1027',
		'twopc_transactions_total{outcome="aborted",instance="a b"} 3 1700000000000',
		"   # an indented comment",
		"",
		'twopc_odd{path="C:\\\\dir \\"x\\"\\nnext",le="+Inf"} NaN',
		'twopc_transaction_duration_seconds_bucket{le="0.005"} 10',
		'twopc_transaction_duration_seconds_bucket{le="0.01"} 30',
		'twopc_transaction_duration_seconds_bucket{le="+Inf"} 40',
		"twopc_transaction_duration_seconds_sum 0.5",
		"twopc_transaction_duration_seconds_count 40",
		"twopc_low -Inf",
		"twopc_high +Inf",
		'twopc_unterminated{x="y} 1',
		"twopc_novalue",
		"9starts_with_a_digit 1",
		"twopc_exp 1.5e3",
		'twopc_spaces { a = "1" , b="2", } 7',
		"twopc_crlf 5\r",
	].join("\n");
	const m = d.parseMetrics(text);
	same(
		"names",
		m.map((s) => s.name),
		[
			"twopc_transactions_total",
			"twopc_transactions_total",
			"twopc_odd",
			"twopc_transaction_duration_seconds_bucket",
			"twopc_transaction_duration_seconds_bucket",
			"twopc_transaction_duration_seconds_bucket",
			"twopc_transaction_duration_seconds_sum",
			"twopc_transaction_duration_seconds_count",
			"twopc_low",
			"twopc_high",
			"twopc_exp",
			"twopc_spaces",
			"twopc_crlf",
		],
	);
	const by = (name) => m.find((s) => s.name === name);
	same("labels", m[1].labels, { outcome: "aborted", instance: "a b" });
	near("value with a timestamp", m[1].value, 3);
	same("escaped label value", by("twopc_odd").labels.path, 'C:\\dir "x"\nnext');
	if (!Number.isNaN(by("twopc_odd").value)) bad.push("NaN not parsed as NaN");
	near("-Inf", by("twopc_low").value, -Infinity);
	near("+Inf", by("twopc_high").value, Infinity);
	near("exponent", by("twopc_exp").value, 1500);
	same("spaces in labels", by("twopc_spaces").labels, { a: "1", b: "2" });
	near("CRLF line", by("twopc_crlf").value, 5);

	/* The samples the dashboard uses, summed over other labels. */
	const s = d.readScrape(m.concat(d.parseMetrics('twopc_transactions_total{outcome="committed",shard="2"} 3')));
	near("committed", s.committed, 1030);
	near("aborted", s.aborted, 3);
	near("sum", s.sum, 0.5);
	near("count", s.count, 40);
	same("buckets", s.buckets.map(([le, n]) => [String(le), n]), [["0.005", 10], ["0.01", 30], ["Infinity", 40]]);

	/* histogram_quantile's estimate. */
	const b = [[0.005, 10], [0.01, 30], [Infinity, 40]];
	near("p10 (first bucket, from 0)", d.quantile(0.1, b), 0.002);
	near("p50 (interpolated)", d.quantile(0.5, b), 0.0075);
	near("p99 (+Inf bucket: the last finite bound)", d.quantile(0.99, b), 0.01);
	near("no observations", d.quantile(0.5, [[0.005, 0], [Infinity, 0]]), null);
	near("no buckets", d.quantile(0.5, []), null);

	/* Rates and latency between two scrapes 2 s apart. */
	const prev = { committed: 100, aborted: 10, sum: 0.05, count: 10, buckets: [[0.005, 5], [0.01, 10], [Infinity, 10]] };
	const cur = { committed: 140, aborted: 12, sum: 0.5, count: 40, buckets: b };
	const p = d.intervalPoint(prev, cur, 2, 1234);
	near("committed/s", p.committed, 20);
	near("aborted/s", p.aborted, 1);
	near("p50 ms", p.p50, (0.005 + (0.005 * 10) / 15) * 1000);
	near("p99 ms", p.p99, 10);
	near("mean ms", p.mean, 15);
	near("t", p.t, 1234);
	/* twopcd restarted: counters went down, the new values are the deltas. */
	const r = d.intervalPoint(cur, { ...prev }, 2, 0);
	near("committed/s after a restart", r.committed, 50);
	near("mean ms after a restart", r.mean, 5);
	/* Nothing happened: no latency, zero rates. */
	const z = d.intervalPoint(cur, cur, 2, 0);
	near("idle committed/s", z.committed, 0);
	near("idle p50", z.p50, null);
	near("idle mean", z.mean, null);
	return bad;
})()
