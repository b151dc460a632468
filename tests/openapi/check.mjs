// check: the OpenAPI check of `make check` (run by tests/openapi-check.sh).
//
//   node check.mjs [--spec FILE] [--lint-only] [TRACE.jsonl ...]
//
// Lints the spec (lint.mjs), proves the validator rejects known-bad
// responses (validate.mjs selfTest), then validates every response recorded
// in the trace files. Ends with a line in Check's format,
//     100%: Checks: N, Failures: F, Errors: 0
// where N = 1 (the lint) + 1 (the self-test) + 1 per trace file (one test
// program's responses, all of which must validate), so that scripts/test
// counts it like the Check programs. The number of responses is printed
// above it.
// Exit status: 0 all good; 1 something failed; 77 (automake's SKIP) when
// lint and self-test passed but the trace holds no response.

import { existsSync, readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { lint } from "./lint.mjs";
import { loadSpec } from "./spec.mjs";
import { SELF_TEST_CASES, TraceValidator, selfTest } from "./validate.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const MAX_SHOWN = 40;

function parseArgs(argv) {
	const o = { spec: resolve(here, "../../docs/openapi.yaml"), lintOnly: false, traces: [] };
	for (let i = 0; i < argv.length; i++) {
		if (argv[i] === "--spec") o.spec = argv[++i];
		else if (argv[i] === "--lint-only") o.lintOnly = true;
		else if (argv[i].startsWith("-")) {
			console.error(`check.mjs: unknown option ${argv[i]}`);
			process.exit(2);
		} else o.traces.push(argv[i]);
	}
	return o;
}

function summary(checks, failures) {
	const pct = checks === 0 ? 0 : Math.floor((100 * (checks - failures)) / checks);
	console.log(`${pct}%: Checks: ${checks}, Failures: ${failures}, Errors: 0`);
}

const opts = parseArgs(process.argv.slice(2));
let checks = 0;
let failures = 0;

// 1. lint
const l = await lint(opts.spec);
for (const line of l.lines) console.log(line);
checks++;
if (!l.ok) failures++;

// 2. self-test
let validator;
try {
	validator = new TraceValidator(loadSpec(opts.spec).doc);
} catch (e) {
	console.log(`openapi-check: cannot build the validator from ${opts.spec}: ${e.message}`);
	summary(checks + 1, failures + 1);
	process.exit(1);
}
const st = selfTest(validator);
checks++;
if (st.length === 0) {
	console.log(`self-test: the validator rejects ${SELF_TEST_CASES} known-bad responses, each for the right reason, and accepts a good one`);
} else {
	failures++;
	for (const s of st) console.log(s);
}

if (opts.lintOnly) {
	summary(checks, failures);
	process.exit(failures ? 1 : 0);
}

// 3. the responses
let validated = 0;
let bad = 0;
const byKind = new Map();
const byFailure = new Map();
let files = 0;
let badFiles = 0;
for (const file of opts.traces) {
	const badBefore = bad;
	if (!existsSync(file)) {
		console.log(`openapi-check: ${file}: no trace: that program got no HTTP response (it skipped, or made no request)`);
		continue;
	}
	const lines = readFileSync(file, "utf8").split("\n");
	lines.forEach((text, i) => {
		if (text.trim() === "") return;
		const at = `${file}:${i + 1}`;
		let t;
		let errs;
		try {
			t = JSON.parse(text);
			errs = validator.check(t);
		} catch (e) {
			errs = [`unreadable trace line: ${e.message}`];
			t = {};
		}
		validated++;
		const path = String(t.path ?? "?").split("?")[0];
		const m = validator.matchPath(path);
		const tmpl = m ? m.entry.template : path;
		const kind = `${t.method ?? "?"} ${tmpl} ${t.status ?? "?"}${t.body && typeof t.body.type === "string" ? ` ${t.body.type.replace(/^https:\/\/twopc\.dev\/problems\//, "")}` : ""}`;
		byKind.set(kind, (byKind.get(kind) ?? 0) + 1);
		if (errs.length === 0) return;
		bad++;
		const key = `${kind}: ${errs[0]}`;
		byFailure.set(key, (byFailure.get(key) ?? 0) + 1);
		if (bad <= MAX_SHOWN) {
			console.log(`FAIL ${at}${t.program ? ` [${t.program}]` : ""}: ${t.method} ${t.path} -> ${t.status}`);
			for (const e of errs) console.log(`    ${e}`);
		}
	});
	files++;
	if (bad > badBefore) badFiles++;
}
checks += files;
failures += badFiles;

console.log(`openapi-check: ${validated} response(s) validated against ${opts.spec}:`);
for (const [k, n] of [...byKind].sort()) console.log(`  ${String(n).padStart(6)}  ${k}`);
if (bad > 0) {
	if (bad > MAX_SHOWN) console.log(`openapi-check: ${bad - MAX_SHOWN} more failure(s) not shown; all of them by kind:`);
	else console.log("openapi-check: failures by kind:");
	for (const [k, n] of [...byFailure].sort()) console.log(`  ${String(n).padStart(6)}  ${k}`);
}

summary(checks, failures);
if (failures > 0) process.exit(1);
if (validated === 0) {
	console.log(
		"openapi-check: SKIP: the trace is empty because no integration test ran " +
			"(run one too, e.g. make check TESTS='tests/check_integration tests/openapi-check.sh'); the lint and the self-test passed",
	);
	process.exit(77);
}
process.exit(0);
