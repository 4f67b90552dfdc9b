import { describe, expect, it } from "vitest";
import { create, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { BadRequestSchema, ErrorInfoSchema } from "@legato/client/gen/google/rpc/error_details_pb";
import { errorCode, errorInfo, errorMessage, errorReason, fieldViolations, newRequestId } from "./api";

/** A ConnectError as the Connect transport makes it from an error body's `details`. */
function refused(message: string, code: Code, details: { type: string; value: Uint8Array }[]): ConnectError {
  const e = new ConnectError(message, code);
  e.details = details;
  return e;
}

describe("errors", () => {
  it("reads the reason, metadata and message of a ConnectError", () => {
    const info = create(ErrorInfoSchema, {
      reason: "ROLE_REQUIRED",
      domain: "legato.dev",
      metadata: { required_role: "editor" },
    });
    const e = refused("this needs the editor role", Code.PermissionDenied, [
      { type: "google.rpc.ErrorInfo", value: toBinary(ErrorInfoSchema, info) },
    ]);
    expect(errorMessage(e)).toBe("this needs the editor role");
    expect(errorReason(e)).toBe("ROLE_REQUIRED");
    expect(errorInfo(e)?.metadata).toEqual({ required_role: "editor" });
    expect(errorCode(e)).toBe(Code.PermissionDenied);
  });

  it("reads the field violations of a BadRequest", () => {
    const bad = create(BadRequestSchema, {
      fieldViolations: [{ field: "steps[1].needs[0]", description: "'extrac' is not a step" }],
    });
    const e = refused("pipeline spec 'etl' has 1 problem", Code.InvalidArgument, [
      { type: "google.rpc.BadRequest", value: toBinary(BadRequestSchema, bad) },
    ]);
    expect(fieldViolations(e)).toEqual([
      { field: "steps[1].needs[0]", description: "'extrac' is not a step", reason: "" },
    ]);
    expect(errorReason(e)).toBe("");
  });

  it("answers for anything thrown", () => {
    expect(errorReason(new Error("x"))).toBe("");
    expect(errorMessage("plain")).toBe("plain");
    expect(errorCode(new Error("x"))).toBe(Code.Unknown);
  });

  it("makes distinct UUIDs", () => {
    const a = newRequestId();
    expect(a).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(newRequestId()).not.toBe(a);
  });
});
