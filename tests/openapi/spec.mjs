// spec: loads docs/openapi.yaml and turns its schemas into ajv validators.
//
// The spec's schemas are JSON Schema 2020-12 (OpenAPI 3.1), so they are
// compiled with ajv's 2020 build in strict mode: an unknown keyword (a typo
// such as `requried`) is an error, not something silently ignored. Schema
// references (#/components/schemas/X) are rewritten to point into one
// registered schema that holds every component; OpenAPI-level references
// (responses, headers, parameters) are followed by deref().

import { readFileSync } from "node:fs";
import Ajv2020 from "ajv/dist/2020.js";
import addFormatsModule from "ajv-formats";
import { parse } from "yaml";

// ajv-formats is CommonJS: its function is the default export's default.
const addFormats = addFormatsModule.default || addFormatsModule;

const COMPONENTS_ID = "https://twopc.dev/openapi/components";
const SCHEMA_REF = "#/components/schemas/";

export function loadSpec(path) {
	const text = readFileSync(path, "utf8");
	return { path, text, doc: parse(text, { prettyErrors: true }) };
}

// Follows a JSON pointer ("#/a/b") inside doc.
export function pointer(doc, ref) {
	if (!ref.startsWith("#/")) throw new Error(`only local references are supported: ${ref}`);
	let node = doc;
	for (const raw of ref.slice(2).split("/")) {
		const key = raw.replace(/~1/g, "/").replace(/~0/g, "~");
		if (node === null || typeof node !== "object" || !(key in node))
			throw new Error(`unresolvable reference ${ref}`);
		node = node[key];
	}
	return node;
}

// An OpenAPI object that may be a Reference Object: the object it names.
export function deref(doc, obj) {
	let seen = 0;
	while (obj && typeof obj === "object" && typeof obj.$ref === "string") {
		if (++seen > 20) throw new Error(`reference loop at ${obj.$ref}`);
		obj = pointer(doc, obj.$ref);
	}
	return obj;
}

// A deep copy of a schema with its component references made absolute.
function rewriteRefs(node) {
	if (Array.isArray(node)) return node.map(rewriteRefs);
	if (node === null || typeof node !== "object") return node;
	const out = {};
	for (const [k, v] of Object.entries(node)) {
		if (k === "$ref" && typeof v === "string" && v.startsWith(SCHEMA_REF))
			out[k] = `${COMPONENTS_ID}#/$defs/${v.slice(SCHEMA_REF.length)}`;
		else if (k === "$ref" && typeof v === "string" && v.startsWith("#"))
			throw new Error(`schema reference ${v} does not point into #/components/schemas`);
		else out[k] = rewriteRefs(v);
	}
	return out;
}

// The compiler for one spec: compile(schema, where) returns a cached ajv
// validate function. Throws (with `where` in the message) if ajv rejects it.
export function makeCompiler(doc) {
	const ajv = new Ajv2020({
		strict: true,
		strictTypes: true,
		strictRequired: false,
		allowUnionTypes: true,
		allErrors: true,
		verbose: false,
	});
	addFormats(ajv);
	// The OpenAPI 3.1 dialect's own keywords are annotations.
	ajv.addVocabulary(["discriminator", "xml", "externalDocs", "example"]);
	ajv.addSchema({ $id: COMPONENTS_ID, $defs: rewriteRefs(doc.components?.schemas ?? {}) });
	const cache = new Map();
	return function compile(schema, where) {
		if (cache.has(schema)) return cache.get(schema);
		let fn;
		try {
			fn = ajv.compile(rewriteRefs(schema));
		} catch (e) {
			throw new Error(`${where}: ${e.message}`);
		}
		cache.set(schema, fn);
		return fn;
	};
}

// The $defs name a component schema reference points at, or null.
export function componentName(schema) {
	return schema && typeof schema.$ref === "string" && schema.$ref.startsWith(SCHEMA_REF)
		? schema.$ref.slice(SCHEMA_REF.length)
		: null;
}

// ajv's errors as one line each: "/branches/bank_a/0: must have required property 'rows_affected'".
export function formatErrors(errors, limit = 8) {
	const lines = (errors || []).map((e) => {
		let msg = `${e.instancePath || "(body)"}: ${e.message}`;
		if (e.keyword === "unevaluatedProperties" || e.keyword === "additionalProperties")
			msg += ` '${e.params.unevaluatedProperty ?? e.params.additionalProperty}'`;
		else if (e.keyword === "const") msg += ` ${JSON.stringify(e.params.allowedValue)}`;
		else if (e.keyword === "enum") msg += ` ${JSON.stringify(e.params.allowedValues)}`;
		return msg;
	});
	let unique = [...new Set(lines)];
	// "must match \"then\" schema" only repeats what the errors inside it say.
	const specific = unique.filter((l) => !/: must match "(then|else)" schema$/.test(l));
	if (specific.length > 0) unique = specific;
	return unique.length > limit
		? unique.slice(0, limit).concat(`... and ${unique.length - limit} more`)
		: unique;
}
