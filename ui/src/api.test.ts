import { describe, expect, it } from "vitest";
import { BinaryWriter } from "@bufbuild/protobuf/wire";
import { Code, ConnectError } from "@connectrpc/connect";
import { decodeErrorInfo, errorMessage, errorReason, newRequestId } from "./api";

function errorInfoBytes(reason: string, domain: string, metadata: Record<string, string>): Uint8Array {
  const w = new BinaryWriter();
  w.tag(1, 2).string(reason);
  w.tag(2, 2).string(domain);
  for (const [k, v] of Object.entries(metadata)) {
    w.tag(3, 2).fork().tag(1, 2).string(k).tag(2, 2).string(v).join();
  }
  return w.finish();
}

describe("errors", () => {
  it("decodes ErrorInfo", () => {
    expect(decodeErrorInfo(errorInfoBytes("ROLE_REQUIRED", "legato.dev", { required_role: "editor" }))).toEqual({
      reason: "ROLE_REQUIRED",
      domain: "legato.dev",
      metadata: { required_role: "editor" },
    });
  });

  it("reads the reason and message of a ConnectError", () => {
    const e = new ConnectError("pipeline etl not found", Code.NotFound);
    e.details = [{ type: "google.rpc.ErrorInfo", value: errorInfoBytes("PIPELINE_NOT_FOUND", "legato.dev", {}) }];
    expect(errorMessage(e)).toBe("pipeline etl not found");
    expect(errorReason(e)).toBe("PIPELINE_NOT_FOUND");
    expect(errorReason(new Error("x"))).toBe("");
    expect(errorMessage("plain")).toBe("plain");
  });

  it("makes distinct UUIDs", () => {
    const a = newRequestId();
    expect(a).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(newRequestId()).not.toBe(a);
  });
});
