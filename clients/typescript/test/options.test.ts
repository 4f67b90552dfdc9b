/** The client's own checks of its options and the error helpers' edge cases (no server). */
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { bearerToken, Code, codeName, ConnectError, errorDetails, errorMessage, errorReason, fieldViolations } from "../src/index.js";
import { createLegatoClient } from "../src/node.js";

describe("createLegatoClient (Node)", () => {
  it("says to drop the scheme of an address", () => {
    expect(() => createLegatoClient({ address: "http://127.0.0.1:7470" })).toThrow(
      /address "http:\/\/127.0.0.1:7470" is a URL: .*drop the scheme \(e.g. "127.0.0.1:7470"\)/,
    );
  });

  it("wants HOST:PORT", () => {
    expect(() => createLegatoClient({ address: "localhost" })).toThrow(/address "localhost" is not HOST:PORT/);
    expect(() => createLegatoClient({ address: "localhost:99999" })).toThrow(/is not HOST:PORT/);
    expect(createLegatoClient({ address: "[::1]:7470" }).url).toBe("http://[::1]:7470");
    expect(createLegatoClient({ address: "legato.example.com:443", tls: true }).url).toBe(
      "https://legato.example.com:443",
    );
  });

  it("takes an address or a baseUrl, not both, and a baseUrl must be http(s)", () => {
    expect(() => createLegatoClient({ address: "h:1", baseUrl: "http://h:2/api" })).toThrow(
      /pass address \(gRPC, "h:1"\) or baseUrl \(Connect, "http:\/\/h:2\/api"\), not both/,
    );
    expect(() => createLegatoClient({ baseUrl: "h:2/api" })).toThrow(/baseUrl "h:2\/api" is not http\(s\)/);
    expect(() => createLegatoClient({ baseUrl: "nothing" })).toThrow(/baseUrl "nothing" is not a URL/);
    expect(createLegatoClient({ baseUrl: "http://h:2/api/" }).url).toBe("http://h:2/api");
  });

  it("says nothing answers at an address where no server listens", async () => {
    // Port 1 on loopback: nothing listens there, so the connection is refused at once.
    const grpc = createLegatoClient({ address: "127.0.0.1:1", token: "lgt_x_y" });
    const overGrpc = errorDetails(await grpc.access.getCaller({}).catch((e: unknown) => e));
    expect(overGrpc.code).toBe(Code.Unavailable);
    expect(overGrpc.message).toBe(
      "cannot connect to the Legato server at 127.0.0.1:1: nothing answers there; is it running? Start one " +
        "with `legato up` or `legato server`, or point `address (LEGATO_SERVER)` at it (connect ECONNREFUSED 127.0.0.1:1)",
    );
    const connect = createLegatoClient({ baseUrl: "http://127.0.0.1:1/api", token: "lgt_x_y" });
    const overConnect = errorDetails(await connect.access.getCaller({}).catch((e: unknown) => e));
    expect(overConnect.message).toMatch(/^cannot connect to the Legato server at http:\/\/127.0.0.1:1\/api: .*point `baseUrl` at it/);
  });

  it("wants a client certificate and its key together", () => {
    expect(() => createLegatoClient({ address: "h:1", cert: "PEM" })).toThrow(/cert and key go together/);
  });

  it("refuses an empty token, or one with white space in it", () => {
    expect(() => bearerToken("")).toThrow(/token is empty/);
    expect(() => bearerToken("lgt_abcdefgh_secret\n")).toThrow(/"lgt_abcd…" holds white space.*token.trim\(\)/);
  });
});

describe("error helpers", () => {
  it("name codes as gRPC does", () => {
    expect(codeName(Code.InvalidArgument)).toBe("INVALID_ARGUMENT");
    expect(codeName(Code.DeadlineExceeded)).toBe("DEADLINE_EXCEEDED");
    expect(codeName(Code.Unauthenticated)).toBe("UNAUTHENTICATED");
  });

  it("read anything thrown, details or not", () => {
    expect(errorReason(new Error("boom"))).toBe("");
    expect(fieldViolations("boom")).toEqual([]);
    expect(errorMessage(new ConnectError("pipeline 'etl' not found", Code.NotFound))).toBe("pipeline 'etl' not found");
    expect(errorDetails(new Error("boom"))).toMatchObject({ code: Code.Unknown, message: "boom", reason: "" });
  });
});

describe("the package's root", () => {
  it("re-exports every generated legato.v1 file (add a line to src/index.ts for a new proto)", () => {
    const dir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../src");
    const generated = readdirSync(path.join(dir, "gen/legato/v1"))
      .filter((f) => f.endsWith("_pb.ts"))
      .map((f) => `export * from "./gen/legato/v1/${f.replace(/\.ts$/, ".js")}";`);
    const index = readFileSync(path.join(dir, "index.ts"), "utf8").split("\n");
    expect(generated.length).toBeGreaterThan(0);
    expect(generated.filter((line) => !index.includes(line))).toEqual([]);
  });
});
