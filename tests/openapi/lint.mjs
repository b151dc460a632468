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
//     its schema, every problem kind used under status S pins status S, and
//     every operation that needs authentication documents 401.

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
	if (own.length === 0) {
		lines.push("lint: strict ajv 2020-12 compile, examples, statuses, 401s: all good");
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
