// lint: is docs/openapi.yaml a valid, self-consistent OpenAPI 3.1 document?
//
//   node lint.mjs [SPEC]        (default: ../../docs/openapi.yaml)
//
// Three independent looks, every one must pass:
//  1. @seriousme/openapi-schema-validator: the document against the official
//     OpenAPI 3.1 JSON Schema, and every $ref resolves;
//  2. @apidevtools/swagger-parser: its own 3.1 validation (dereferences the
//     whole document, path parameters declared, operationIds unique);
//  3. our own: every schema compiles under ajv 2020-12 in strict mode (no
//     unknown keywords, no type mistakes), every example validates against
//     its schema, every problem kind used under status S pins status S,
//     every operation that needs authentication documents 401, and the JSON
//     examples of docs/API.md and README.md (```json and ```http blocks that
//     parse) validate against the schema of what they show.

import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { dirname, resolve } from "node:path";
import { Validator } from "@seriousme/openapi-schema-validator";
import SwaggerParser from "@apidevtools/swagger-parser";
import { componentName, deref, formatErrors, loadSpec, makeCompiler } from "./spec.mjs";

const METHODS = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

const clone = (v) => JSON.parse(JSON.stringify(v));

// Every schema of the document worth compiling, with where it is.
function* schemasOf(doc) {
	for (const [name, s] of Object.entries(doc.components?.schemas ?? {}))
		yield [`#/components/schemas/${name}`, s];
	const mediaSchemas = function* (where, content) {
		for (const [mt, media] of Object.entries(content ?? {}))
			if (media.schema) yield [`${where}/content/${mt}`, media.schema, media];
	};
	for (const [name, r] of Object.entries(doc.components?.responses ?? {})) {
		yield* mediaSchemas(`#/components/responses/${name}`, r.content);
		for (const [h, hv] of Object.entries(r.headers ?? {})) {
			const hd = deref(doc, hv);
			if (hd.schema) yield [`#/components/responses/${name}/headers/${h}`, hd.schema, hd];
		}
	}
	for (const [name, h] of Object.entries(doc.components?.headers ?? {}))
		if (h.schema) yield [`#/components/headers/${name}`, h.schema, h];
	for (const [name, p] of Object.entries(doc.components?.parameters ?? {}))
		if (p.schema) yield [`#/components/parameters/${name}`, p.schema, p];
	for (const [name, b] of Object.entries(doc.components?.requestBodies ?? {}))
		yield* mediaSchemas(`#/components/requestBodies/${name}`, b.content);
	for (const [path, item] of Object.entries(doc.paths ?? {})) {
		for (const m of METHODS) {
			const op = item[m];
			if (!op) continue;
			const where = `#/paths/${path}/${m}`;
			for (const [status, r] of Object.entries(op.responses ?? {})) {
				if (r.$ref) continue; // checked as a component
				yield* mediaSchemas(`${where}/responses/${status}`, r.content);
			}
			if (op.requestBody && !op.requestBody.$ref)
				yield* mediaSchemas(`${where}/requestBody`, op.requestBody.content);
		}
	}
}

// Our own checks; returns a list of problems (empty: all good).
export function ownChecks(doc) {
	const errors = [];
	let compile;
	try {
		compile = makeCompiler(doc);
	} catch (e) {
		return [`the component schemas do not compile: ${e.message}`];
	}

	for (const [where, schema, holder] of schemasOf(doc)) {
		let fn;
		try {
			fn = compile(schema, where);
		} catch (e) {
			errors.push(e.message);
			continue;
		}
		const examples = [];
		if (holder && "example" in holder) examples.push(["example", holder.example]);
		for (const [n, ex] of Object.entries(holder?.examples ?? {}))
			examples.push([`examples.${n}`, deref(doc, ex).value]);
		if (Array.isArray(schema.examples))
			schema.examples.forEach((v, i) => examples.push([`schema examples[${i}]`, v]));
		for (const [n, value] of examples)
			if (!fn(value)) errors.push(`${where} ${n} does not match its schema: ${formatErrors(fn.errors).join("; ")}`);
	}

	// A problem kind pins its status; it must be the status it is used under.
	const problemStatus = (schema) => {
		const name = componentName(schema);
		const s = name ? doc.components.schemas[name] : schema;
		return s?.properties?.status?.const;
	};
	const checkResponse = (where, status, resp) => {
		const r = deref(doc, resp);
		for (const [mt, media] of Object.entries(r.content ?? {})) {
			if (mt !== "application/problem+json") continue;
			const alts = media.schema.oneOf ?? [media.schema];
			for (const alt of alts) {
				const st = problemStatus(alt);
				if (st === undefined) errors.push(`${where}: ${alt.$ref ?? "a problem schema"} does not pin status`);
				else if (String(st) !== status)
					errors.push(`${where}: ${alt.$ref} has status ${st} but is listed under ${status}`);
			}
		}
	};
	for (const [status, resp] of Object.entries(doc["x-twopc-any-path-responses"] ?? {})) {
		try {
			checkResponse(`x-twopc-any-path-responses/${status}`, status, resp);
		} catch (e) {
			errors.push(`x-twopc-any-path-responses/${status}: ${e.message}`);
		}
	}
	for (const [path, item] of Object.entries(doc.paths ?? {})) {
		for (const m of METHODS) {
			const op = item[m];
			if (!op) continue;
			const where = `${m.toUpperCase()} ${path}`;
			for (const [status, resp] of Object.entries(op.responses ?? {})) {
				try {
					checkResponse(`${where} ${status}`, status, resp);
				} catch (e) {
					errors.push(`${where} ${status}: ${e.message}`);
				}
			}
			const security = op.security ?? doc.security ?? [];
			if (security.length > 0 && !op.responses?.["401"])
				errors.push(`${where} needs authentication but documents no 401`);
		}
	}
	// The header extension the validator honours must name real problem types.
	for (const [name, h] of Object.entries(doc.components?.headers ?? {})) {
		for (const t of h["x-twopc-required-for-types"] ?? []) {
			const known = Object.values(doc.components.schemas).some((s) => s?.properties?.type?.const === t);
			if (!known) errors.push(`#/components/headers/${name}: x-twopc-required-for-types names unknown type ${t}`);
		}
	}
	return errors;
}

// Which schema a documentation example shows, by its members; null if none.
function schemaForExample(doc, v) {
	if (v === null || typeof v !== "object" || Array.isArray(v)) return null;
	const schemas = doc.components.schemas;
	if (typeof v.type === "string" && v.type.startsWith("https://twopc.dev/problems/")) {
		const name = Object.keys(schemas).find((n) => schemas[n]?.properties?.type?.const === v.type);
		return name ?? `(no schema for problem type ${v.type})`;
	}
	if (v.outcome === "committed") return "TransactionCommitted";
	if ("sweep" in v) return "SweepReport";
	if ("in_flight" in v) return "Health";
	if ("branches" in v) return "TransactionRequest";
	if (Object.keys(v).sort().join(",") === "id,status") return "TransactionStatus";
	return null;
}

// The JSON examples of a Markdown file that parse: [line, value, http status or null].
function markdownExamples(text) {
	const out = [];
	const re = /^```(json|http)\n([\s\S]*?)^```$/gm;
	let m;
	while ((m = re.exec(text)) !== null) {
		const line = text.slice(0, m.index).split("\n").length;
		let body = m[2];
		let status = null;
		if (m[1] === "http") {
			const st = /^HTTP\/1\.1 (\d{3})/.exec(body);
			status = st ? Number(st[1]) : null;
			const blank = body.indexOf("\n\n");
			body = blank < 0 ? "" : body.slice(blank + 2);
		}
		try {
			out.push([line, JSON.parse(body), status]);
		} catch {
			// A shape with placeholders (<participant>, ...), not an example.
		}
	}
	return out;
}

export function docExampleChecks(doc, files) {
	const errors = [];
	let count = 0;
	const compile = makeCompiler(doc);
	for (const file of files) {
		if (!existsSync(file)) continue;
		for (const [line, value, status] of markdownExamples(readFileSync(file, "utf8"))) {
			const name = schemaForExample(doc, value);
			if (name === null || name.startsWith("(")) {
				errors.push(`${file}:${line}: ${name ?? "an example of no known shape"}`);
				continue;
			}
			count++;
			const fn = compile({ $ref: `#/components/schemas/${name}` }, `${file}:${line}`);
			if (!fn(value)) errors.push(`${file}:${line}: not a valid ${name}: ${formatErrors(fn.errors).join("; ")}`);
			if (status !== null && typeof value.status === "number" && value.status !== status)
				errors.push(`${file}:${line}: HTTP ${status} with a body saying status ${value.status}`);
		}
	}
	return { errors, count };
}

// Runs all three; returns { ok, lines } where lines say what each found.
export async function lint(specPath) {
	const { doc } = loadSpec(specPath);
	const lines = [];
	let ok = true;

	const seriousme = new Validator();
	const r1 = await seriousme.validate(clone(doc));
	if (r1.valid) {
		lines.push(`lint: @seriousme/openapi-schema-validator: valid OpenAPI ${seriousme.specificationVersion}`);
	} else {
		ok = false;
		const errs = Array.isArray(r1.errors) ? formatErrors(r1.errors, 20) : [String(r1.errors)];
		lines.push(`lint: @seriousme/openapi-schema-validator: INVALID:`, ...errs.map((e) => `  ${e}`));
	}

	try {
		const api = await SwaggerParser.validate(clone(doc));
		lines.push(`lint: @apidevtools/swagger-parser: valid OpenAPI ${api.openapi}`);
	} catch (e) {
		ok = false;
		lines.push(`lint: @apidevtools/swagger-parser: INVALID: ${e.message}`);
	}

	const own = ownChecks(doc);
	const docs = [resolve(dirname(specPath), "API.md"), resolve(dirname(specPath), "../README.md")];
	const ex = docExampleChecks(doc, docs);
	own.push(...ex.errors);
	if (own.length === 0) {
		lines.push(`lint: strict ajv 2020-12 compile, examples, statuses, 401s, ${ex.count} examples in API.md and README.md: all good`);
	} else {
		ok = false;
		lines.push(`lint: ${own.length} problem(s):`, ...own.map((e) => `  ${e}`));
	}
	return { ok, lines };
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
	const here = dirname(fileURLToPath(import.meta.url));
	const spec = process.argv[2] ?? resolve(here, "../../docs/openapi.yaml");
	const { ok, lines } = await lint(spec);
	for (const l of lines) console.log(l);
	process.exit(ok ? 0 : 1);
}
