import { describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { ParamSpecSchema, ParamType } from "@legato/client/gen/legato/v1/spec_pb";
import { buildParams, paramFields, parseParam } from "./params";

const num = (n: number) => create(ValueSchema, { kind: { case: "numberValue", value: n } });
const str = (s: string) => create(ValueSchema, { kind: { case: "stringValue", value: s } });

describe("paramFields", () => {
  const fields = paramFields({
    rows: create(ParamSpecSchema, { type: ParamType.INTEGER, default: num(127), description: "How many" }),
    day: create(ParamSpecSchema, { type: ParamType.DATE, required: true }),
    region: create(ParamSpecSchema, { type: ParamType.STRING, choices: [str("eu"), str("us")] }),
    dry: create(ParamSpecSchema, { type: ParamType.BOOLEAN }),
  });

  it("puts required fields first and fills defaults", () => {
    expect(fields.map((f) => f.name)).toEqual(["day", "dry", "region", "rows"]);
    const rows = fields.find((f) => f.name === "rows");
    expect(rows).toMatchObject({ type: "integer", control: "number", initial: "127", hasDefault: true, required: false });
    expect(fields.find((f) => f.name === "region")?.control).toBe("choice");
    expect(fields.find((f) => f.name === "dry")?.control).toBe("boolean");
  });

  it("builds typed params and reports bad ones", () => {
    expect(buildParams(fields, { day: "2026-06-12", rows: "5", region: "eu", dry: "true" })).toEqual({
      ok: true,
      params: { day: "2026-06-12", rows: 5, region: "eu", dry: true },
    });
    const bad = buildParams(fields, { day: "", rows: "5.5", region: "", dry: "" });
    expect(bad.ok).toBe(false);
    if (!bad.ok) expect(Object.keys(bad.errors).sort()).toEqual(["day", "rows"]);
  });

  it("parses JSON and any", () => {
    const [json] = paramFields({ cfg: create(ParamSpecSchema, { type: ParamType.JSON }) });
    expect(parseParam(json, '{"a": [1]}')).toEqual({ ok: true, value: { a: [1] } });
    expect(parseParam(json, "{").ok).toBe(false);
    const [any] = paramFields({ x: create(ParamSpecSchema, {}) });
    expect(parseParam(any, "12")).toEqual({ ok: true, value: 12 });
    expect(parseParam(any, "hello")).toEqual({ ok: true, value: "hello" });
    expect(parseParam(any, "")).toEqual({ ok: true, value: undefined });
  });
});
