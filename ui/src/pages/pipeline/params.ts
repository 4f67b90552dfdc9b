import { toJson, type JsonObject, type JsonValue } from "@bufbuild/protobuf";
import { ValueSchema, type Value } from "@bufbuild/protobuf/wkt";
import { ParamType, type ParamSpec } from "@legato/client/gen/legato/v1/spec_pb";
import { paramTypeName } from "../../format";

export type ParamControl = "text" | "number" | "boolean" | "date" | "json" | "choice";

/** One input of the run form, built from a ParamSpec. */
export interface ParamField {
  name: string;
  type: string;
  control: ParamControl;
  required: boolean;
  description: string;
  /** The input's starting text: the default, as the user would type it. */
  initial: string;
  hasDefault: boolean;
  /** For `choice`: the accepted values as text, and the JSON value each stands for. */
  choices: { label: string; value: JsonValue }[];
}

export function valueToJson(v: Value | undefined): JsonValue | undefined {
  if (!v || v.kind.case === undefined) return undefined;
  return toJson(ValueSchema, v);
}

/** The text a user would type for a JSON value: strings bare, everything else as JSON. */
export function jsonToText(v: JsonValue | undefined): string {
  if (v === undefined || v === null) return "";
  if (typeof v === "string") return v;
  return JSON.stringify(v);
}

function controlOf(t: ParamType, hasChoices: boolean): ParamControl {
  if (hasChoices) return "choice";
  switch (t) {
    case ParamType.INTEGER:
    case ParamType.NUMBER:
      return "number";
    case ParamType.BOOLEAN:
      return "boolean";
    case ParamType.DATE:
      return "date";
    case ParamType.JSON:
      return "json";
    default:
      return "text";
  }
}

/** The run form's fields, sorted: required ones first, then by name. */
export function paramFields(params: Record<string, ParamSpec>): ParamField[] {
  const fields = Object.entries(params).map(([name, spec]): ParamField => {
    const def = valueToJson(spec.default);
    const choices = spec.choices
      .map((c) => valueToJson(c))
      .filter((c): c is JsonValue => c !== undefined)
      .map((c) => ({ label: jsonToText(c), value: c }));
    return {
      name,
      type: paramTypeName(spec.type),
      control: controlOf(spec.type, choices.length > 0),
      required: spec.required && def === undefined,
      description: spec.description,
      initial: jsonToText(def),
      hasDefault: def !== undefined,
      choices,
    };
  });
  fields.sort((a, b) => (a.required === b.required ? a.name.localeCompare(b.name) : a.required ? -1 : 1));
  return fields;
}

export type ParsedParam = { ok: true; value: JsonValue | undefined } | { ok: false; error: string };

/** The JSON value of a field's text; `undefined` (not sent) for an empty optional field. */
export function parseParam(field: ParamField, text: string): ParsedParam {
  const t = field.control === "json" || field.control === "text" ? text : text.trim();
  if (t.trim() === "") {
    if (field.required) return { ok: false, error: "Required." };
    return { ok: true, value: undefined };
  }
  if (field.control === "choice") {
    const c = field.choices.find((ch) => ch.label === t);
    return c ? { ok: true, value: c.value } : { ok: false, error: `Not one of: ${field.choices.map((ch) => ch.label).join(", ")}.` };
  }
  switch (field.type) {
    case "integer": {
      if (!/^[-+]?\d+$/.test(t)) return { ok: false, error: "Not an integer." };
      const n = Number(t);
      if (!Number.isSafeInteger(n)) return { ok: false, error: "Too large." };
      return { ok: true, value: n };
    }
    case "number": {
      const n = Number(t);
      if (!Number.isFinite(n)) return { ok: false, error: "Not a number." };
      return { ok: true, value: n };
    }
    case "boolean":
      if (t === "true") return { ok: true, value: true };
      if (t === "false") return { ok: true, value: false };
      return { ok: false, error: "Must be true or false." };
    case "date":
      if (!/^\d{4}-\d{2}-\d{2}$/.test(t)) return { ok: false, error: "Not a date (YYYY-MM-DD)." };
      return { ok: true, value: t };
    case "json":
    case "any":
      try {
        return { ok: true, value: JSON.parse(t) as JsonValue };
      } catch {
        if (field.type === "any") return { ok: true, value: text };
        return { ok: false, error: "Not valid JSON." };
      }
    default:
      return { ok: true, value: text };
  }
}

/** The params of TriggerRun from the form's texts, or the errors by field name. */
export function buildParams(
  fields: readonly ParamField[],
  texts: Record<string, string>,
): { ok: true; params: JsonObject } | { ok: false; errors: Record<string, string> } {
  const params: JsonObject = {};
  const errors: Record<string, string> = {};
  for (const f of fields) {
    const r = parseParam(f, texts[f.name] ?? "");
    if (!r.ok) errors[f.name] = r.error;
    else if (r.value !== undefined) params[f.name] = r.value;
  }
  return Object.keys(errors).length > 0 ? { ok: false, errors } : { ok: true, params };
}
