// validate: checks recorded HTTP responses against docs/openapi.yaml.
//
// Each trace line is one response the integration tests received, as
// tests/testlib.c's tl_http_trace() writes it: {"program", "method", "path",
// "status", "content_type", "headers" {lowercase name: value}, "body" (parsed
// JSON or null), "raw_body" (when the body is not JSON)}. For each:
//   1. the operation: the path template that matches (/v1/transactions/{id})
//      and the method; a path the spec does not know, or a method the path
//      does not take, must get one of x-twopc-any-path-responses (and a 405
//      must list in Allow exactly the methods the path takes);
//   2. the response documented for the status (or NXX, or default);
//   3. the Content-Type is one of the response's media types;
//   4. the body validates against that media type's schema; for a oneOf of
//      problem kinds, the kind named by the body's `type` is picked so the
//      errors say what is wrong with that kind;
//   5. every required header is there (and those required for this problem
//      type: x-twopc-required-for-types), and every documented header that
//      is there matches its schema;
//   6. a 2xx answers a request whose path parameters match their schemas.

import { componentName, deref, formatErrors, makeCompiler } from "./spec.mjs";

const METHODS = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

function templateRegex(template) {
	const names = [];
	const src = template
		.split(/(\{[^}]+\})/)
		.map((part) => {
			const m = /^\{([^}]+)\}$/.exec(part);
			if (m) {
				names.push(m[1]);
				return "([^/]+)";
			}
			return part.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
		})
		.join("");
	return { re: new RegExp(`^${src}$`), names };
}

const isJsonMedia = (mt) => mt === "application/json" || /^application\/[^;]*\+json$/.test(mt);

// A value on one line, cut at N characters (strings quoted, newlines escaped).
const short = (v, n = 300) => {
	const s = JSON.stringify(v);
	return s === undefined ? String(v) : s.length > n ? `${s.slice(0, n)}...` : s;
};

export class TraceValidator {
	constructor(doc) {
		this.doc = doc;
		this.compile = makeCompiler(doc);
		this.paths = Object.entries(doc.paths ?? {}).map(([template, item]) => ({
			template,
			item,
			methods: METHODS.filter((m) => item[m]),
			...templateRegex(template),
		}));
		this.anyPath = doc["x-twopc-any-path-responses"] ?? {};
	}

	// The path template entry that matches PATH (no query), or null.
	matchPath(path) {
		for (const p of this.paths) {
			const m = p.re.exec(path);
			if (m) return { entry: p, params: Object.fromEntries(p.names.map((n, i) => [n, decodeURIComponent(m[i + 1])])) };
		}
		return null;
	}

	// The problem-kind alternative of a oneOf whose `type` const is TYPE.
	pickAlternative(schema, type) {
		for (const alt of schema.oneOf ?? []) {
			const name = componentName(alt);
			const s = name ? this.doc.components.schemas[name] : alt;
			if (s?.properties?.type?.const === type) return { alt, name };
		}
		return null;
	}

	alternativeTypes(schema) {
		return (schema.oneOf ?? []).map((alt) => {
			const name = componentName(alt);
			const s = name ? this.doc.components.schemas[name] : alt;
			return s?.properties?.type?.const ?? name ?? "?";
		});
	}

	// Returns a list of problems with one response (empty: it conforms).
	check(t) {
		const errs = [];
		for (const k of ["method", "path", "status", "headers"])
			if (!(k in t)) return [`trace line has no "${k}"`];
		const method = String(t.method).toLowerCase();
		const path = String(t.path).split(/[?#]/)[0];
		const status = String(t.status);
		const headers = t.headers ?? {};

		// 1. the operation, or the responses any path can get
		const match = this.matchPath(path);
		const op = match ? match.entry.item[method] : undefined;
		let responses, where;
		if (op) {
			responses = op.responses ?? {};
			where = `${method.toUpperCase()} ${match.entry.template}`;
		} else {
			responses = this.anyPath;
			where = match
				? `x-twopc-any-path-responses (${match.entry.template} does not take ${t.method})`
				: "x-twopc-any-path-responses (no such path in the spec)";
			if (match && status === "405") {
				const allow = headers.allow;
				const want = match.entry.methods.map((m) => m.toUpperCase()).sort();
				const got = allow === undefined ? [] : allow.split(",").map((s) => s.trim().toUpperCase()).sort();
				if (allow !== undefined && got.join(",") !== want.join(","))
					errs.push(`Allow: ${allow} does not list exactly the methods ${match.entry.template} takes (${want.join(", ")})`);
			}
		}

		// 2. the response for the status
		const ref = responses[status] ?? responses[`${status[0]}XX`] ?? responses.default;
		if (!ref) {
			errs.push(`status ${status} is not documented for ${where} (documented: ${Object.keys(responses).join(", ")})`);
			if (t.body !== null && t.body !== undefined) errs.push(`body: ${short(t.body)}`);
			else if (t.raw_body !== undefined) errs.push(`raw body (${t.content_type || "no Content-Type"}): ${short(t.raw_body)}`);
			return errs;
		}
		const resp = deref(this.doc, ref);
		const respName = ref.$ref ?? `${where} ${status}`;

		// 3. the media type
		const content = resp.content ?? {};
		const ct = String(t.content_type ?? "").toLowerCase();
		let problemType;
		if (Object.keys(content).length > 0) {
			const mtKey = Object.keys(content).find((k) => k.toLowerCase() === ct);
			if (!mtKey) {
				errs.push(`Content-Type "${t.content_type ?? ""}" is not one of ${respName}'s (${Object.keys(content).join(", ")})`);
				if (t.raw_body !== undefined) errs.push(`raw body: ${short(t.raw_body)}`);
			} else {
				// 4. the body
				const media = content[mtKey];
				if (isJsonMedia(mtKey) && t.raw_body !== undefined) {
					errs.push(`the body is not JSON: ${short(t.raw_body)}`);
				} else if (media.schema) {
					// A text body is checked as the string it is.
					const body = isJsonMedia(mtKey) ? t.body : (t.raw_body ?? "");
					errs.push(...this.checkBody(body, media.schema, `${respName} ${mtKey}`));
					if (t.body && typeof t.body === "object" && typeof t.body.type === "string") problemType = t.body.type;
				}
			}
		} else if (t.raw_body) {
			errs.push(`${respName} documents no body, but one came: ${short(t.raw_body)}`);
		}

		// 5. headers
		for (const [name, hRef] of Object.entries(resp.headers ?? {})) {
			const h = deref(this.doc, hRef);
			const value = headers[name.toLowerCase()];
			const requiredFor = h["x-twopc-required-for-types"] ?? [];
			if (value === undefined) {
				if (h.required) errs.push(`header ${name} is missing (required by ${respName})`);
				else if (problemType && requiredFor.includes(problemType))
					errs.push(`header ${name} is missing (required with ${problemType})`);
				continue;
			}
			if (h.schema) {
				const fn = this.compile(h.schema, `${respName} header ${name}`);
				if (!fn(value)) errs.push(`header ${name}: ${JSON.stringify(value)}: ${formatErrors(fn.errors).join("; ")}`);
			}
		}

		// 6. a success answers a valid request
		if (op && status.startsWith("2")) {
			for (const pRef of [...(match.entry.item.parameters ?? []), ...(op.parameters ?? [])]) {
				const p = deref(this.doc, pRef);
				if (p.in !== "path" || !p.schema) continue;
				const fn = this.compile(p.schema, `parameter ${p.name}`);
				if (!fn(match.params[p.name]))
					errs.push(`a ${status} for path parameter ${p.name}=${JSON.stringify(match.params[p.name])}, which its schema rejects`);
			}
		}
		return errs;
	}

	checkBody(body, schema, what) {
		const fn = this.compile(schema, what);
		if (fn(body)) return [];
		// A oneOf of problem kinds: say what is wrong with the kind the body names.
		if (schema.oneOf && body && typeof body === "object" && typeof body.type === "string") {
			const pick = this.pickAlternative(schema, body.type);
			if (!pick)
				return [
					`problem type ${JSON.stringify(body.type)} is not documented for ${what} (documented: ${this.alternativeTypes(schema).join(", ")})`,
					`body: ${short(body)}`,
				];
			const alt = this.compile(pick.alt, `${what} ${pick.name}`);
			alt(body);
			return [
				`the body does not match ${pick.name ?? "its problem kind"}: ${formatErrors(alt.errors).join("; ")}`,
				`body: ${short(body)}`,
			];
		}
		const name = componentName(schema);
		return [
			`the body does not match ${name ? `#/components/schemas/${name}` : what}: ${formatErrors(fn.errors).join("; ")}`,
			`body: ${short(body)}`,
		];
	}
}

// Known-bad responses that the validator must reject, each for the reason
// given; and one known-good response it must accept. Proves that the check
// can fail. Returns a list of problems (empty: the validator works).
export const SELF_TEST_CASES = 10;

export function selfTest(validator) {
	const problem = (slug, status, extra = {}) => ({
		type: `https://twopc.dev/problems/${slug}`,
		title: "t",
		status,
		detail: "d",
		...extra,
	});
	const json = { "content-type": "application/json" };
	const pj = { "content-type": "application/problem+json" };
	const cases = [
		{
			why: "a 409 statement-failed without sqlstate",
			want: "must have required property 'sqlstate'",
			line: {
				method: "POST", path: "/v1/transactions", status: 409, content_type: "application/problem+json", headers: pj,
				body: problem("statement-failed", 409, { id: "0006610542119055", outcome: "aborted", participant: "bank_a", statement: 0, message: "m" }),
			},
		},
		{
			why: "a 503 without Retry-After",
			want: "header Retry-After is missing",
			line: {
				method: "POST", path: "/v1/transactions", status: 503, content_type: "application/problem+json", headers: pj,
				body: problem("too-many-in-flight", 503),
			},
		},
		{
			why: "an HTML 413 (what evhttp sends itself)",
			want: "Content-Type \"text/html\"",
			line: {
				method: "POST", path: "/v1/transactions", status: 413, content_type: "text/html", headers: { "content-type": "text/html" },
				body: null, raw_body: "<HTML><HEAD><TITLE>413 Payload Too Large</TITLE></HEAD></HTML>",
			},
		},
		{
			why: "a commit whose id is not 16 lowercase hex digits",
			want: "/id: must match pattern",
			line: {
				method: "POST", path: "/v1/transactions", status: 200, content_type: "application/json", headers: json,
				body: { id: "0006610542119O53", outcome: "committed", branches: { bank_a: [{ rows_affected: 1 }] } },
			},
		},
		{
			why: "a commit with an undocumented member",
			want: "must NOT have additional properties 'rows_returned'",
			line: {
				method: "POST", path: "/v1/transactions", status: 200, content_type: "application/json", headers: json,
				body: { id: "0006610542119053", outcome: "committed", branches: { bank_a: [{ rows_affected: 1, rows_returned: 0 }] } },
			},
		},
		{
			why: "a 404 on an unknown path that is not a problem document",
			want: "Content-Type \"application/json\"",
			line: {
				method: "GET", path: "/v2/nothing", status: 404, content_type: "application/json", headers: json, body: { error: "not found" },
			},
		},
		{
			why: "a 405 whose Allow does not match the path",
			want: "does not list exactly the methods",
			line: {
				method: "GET", path: "/v1/transactions", status: 405, content_type: "application/problem+json", headers: { ...pj, allow: "GET, POST" },
				body: problem("method-not-allowed", 405),
			},
		},
		{
			why: "a problem kind the status does not document",
			want: "problem type \"https://twopc.dev/problems/timeout\" is not documented",
			line: {
				method: "POST", path: "/v1/transactions", status: 409, content_type: "application/problem+json", headers: pj,
				body: problem("timeout", 409, { id: "0006610542119055", outcome: "aborted" }),
			},
		},
		{
			why: "a 409 idempotency-key-in-use without Retry-After",
			want: "header Retry-After is missing (required with https://twopc.dev/problems/idempotency-key-in-use)",
			line: {
				method: "POST", path: "/v1/transactions", status: 409, content_type: "application/problem+json", headers: pj,
				body: problem("idempotency-key-in-use", 409),
			},
		},
		{
			why: "a 401 without WWW-Authenticate",
			want: "header WWW-Authenticate is missing",
			line: {
				method: "GET", path: "/v1/transactions/0006610542119053", status: 401, content_type: "application/problem+json", headers: pj,
				body: problem("unauthorized", 401),
			},
		},
	];
	const good = {
		method: "GET", path: "/healthz", status: 200, content_type: "application/json", headers: json,
		body: { status: "ok", in_flight: 0, participants: { bank_a: { reachable: true, pool_size: 8, open: 8, busy: 0, waiters: 0 } } },
	};
	const out = [];
	if (cases.length !== SELF_TEST_CASES) out.push(`self-test: ${cases.length} cases, SELF_TEST_CASES says ${SELF_TEST_CASES}`);
	for (const c of cases) {
		const errs = validator.check(c.line);
		if (errs.length === 0) out.push(`self-test: accepted ${c.why}`);
		else if (!errs.some((e) => e.includes(c.want)))
			out.push(`self-test: rejected ${c.why}, but not with "${c.want}": ${errs.join(" | ")}`);
	}
	const goodErrs = validator.check(good);
	if (goodErrs.length > 0) out.push(`self-test: rejected a good /healthz response: ${goodErrs.join(" | ")}`);
	return out;
}
