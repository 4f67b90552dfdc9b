/**
 * The Node client over TLS and mTLS: a real `legato server` with certificates from `legato
 * certs create`, reached with `ca` (and `cert`/`key`), and refused without them.
 */
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError, errorReason } from "../src/index.js";
import { createLegatoClient } from "../src/node.js";
import { type Cluster, LEGATO_BIN, startCluster } from "./cluster.js";

const run = promisify(execFile);
const pem = (dir: string, name: string): string => readFileSync(path.join(dir, "certs", name), "utf8");

async function refusal(call: () => Promise<unknown>): Promise<ConnectError> {
  try {
    await call();
  } catch (error) {
    return ConnectError.from(error);
  }
  throw new Error("the call succeeded; it was expected to fail");
}

describe("TLS", () => {
  let cluster: Cluster;

  beforeAll(async () => {
    cluster = await startCluster({
      agent: false,
      http: false,
      prepare: async (dir) => {
        await run(LEGATO_BIN, ["certs", "create", "--dir", path.join(dir, "certs"), "--client", "ts"]);
      },
      serverArgs: ["--tls-cert", "{dir}/certs/server.pem", "--tls-key", "{dir}/certs/server.key"],
      client: (dir) => ({ ca: pem(dir, "ca.pem") }),
    });
  });

  afterAll(async () => {
    await cluster?.stop();
  });

  it("calls a TLS server whose certificate the given CA signed", async () => {
    expect(cluster.admin.url).toBe(`https://${cluster.grpcAddress}`);
    const caller = await cluster.admin.access.getCaller({});
    expect(caller.name).toBe("ts-admin");
    const { pipelines } = await cluster.admin.pipelines.listPipelines({});
    expect(pipelines).toEqual([]);
  });

  it("does not trust the server's certificate without the CA", async () => {
    const untrusting = createLegatoClient({ address: cluster.grpcAddress, token: cluster.adminToken, tls: true });
    try {
      const error = await refusal(() => untrusting.access.getCaller({}));
      expect(error.code).toBe(Code.Unavailable);
      expect(error.rawMessage).toContain(
        `cannot connect to the Legato server at ${cluster.grpcAddress}: its certificate is not signed by a ` +
          "CA this client trusts; pass `ca` with the CA that signed it (",
      );
    } finally {
      untrusting.close();
    }
  });

  it("says to pass the CA when it speaks plain HTTP/2 to a TLS server", async () => {
    const plain = createLegatoClient({ address: cluster.grpcAddress, token: cluster.adminToken });
    try {
      const error = await refusal(() => plain.access.getCaller({}));
      expect(error.code).toBe(Code.Unavailable);
      expect(error.rawMessage).toMatch(/it closed the connection at once; if it serves TLS, pass `ca` with the CA/);
    } finally {
      plain.close();
    }
  });
});

describe("TLS to a server without it", () => {
  let cluster: Cluster;

  beforeAll(async () => {
    cluster = await startCluster({ agent: false, http: false });
  });

  afterAll(async () => {
    await cluster?.stop();
  });

  it("says the server does not serve TLS", async () => {
    const tlsClient = createLegatoClient({ address: cluster.grpcAddress, token: cluster.adminToken, tls: true });
    try {
      const error = await refusal(() => tlsClient.access.getCaller({}));
      expect(error.code).toBe(Code.Unavailable);
      expect(error.rawMessage).toMatch(
        /^cannot connect to the Legato server at 127\.0\.0\.1:\d+: it does not serve TLS; drop `ca`, `cert`, `key` and `tls`, or start the server with --tls-cert and --tls-key \(/,
      );
    } finally {
      tlsClient.close();
    }
  });
});

describe("mTLS", () => {
  let cluster: Cluster;

  beforeAll(async () => {
    cluster = await startCluster({
      agent: false,
      http: false,
      prepare: async (dir) => {
        await run(LEGATO_BIN, ["certs", "create", "--dir", path.join(dir, "certs"), "--client", "ts"]);
      },
      serverArgs: [
        "--tls-cert",
        "{dir}/certs/server.pem",
        "--tls-key",
        "{dir}/certs/server.key",
        "--client-ca",
        "{dir}/certs/ca.pem",
      ],
      client: (dir) => ({ ca: pem(dir, "ca.pem"), cert: pem(dir, "client-ts.pem"), key: pem(dir, "client-ts.key") }),
    });
  });

  afterAll(async () => {
    await cluster?.stop();
  });

  it("presents the client certificate, and still sends the token", async () => {
    expect((await cluster.admin.access.getCaller({})).name).toBe("ts-admin");
    const withoutToken = createLegatoClient({
      address: cluster.grpcAddress,
      ca: pem(cluster.dir, "ca.pem"),
      cert: pem(cluster.dir, "client-ts.pem"),
      key: pem(cluster.dir, "client-ts.key"),
    });
    try {
      expect(errorReason(await refusal(() => withoutToken.runs.listRuns({})))).toBe("CREDENTIAL_MISSING");
    } finally {
      withoutToken.close();
    }
  });

  it("is refused without a client certificate", async () => {
    const anonymous = createLegatoClient({
      address: cluster.grpcAddress,
      token: cluster.adminToken,
      ca: pem(cluster.dir, "ca.pem"),
    });
    try {
      const error = await refusal(() => anonymous.access.getCaller({}));
      expect(error.code).toBe(Code.Unavailable);
      expect(error.rawMessage).toMatch(
        /it closed the connection during the TLS handshake; if it requires client certificates \(mTLS, --client-ca\), pass `cert` and `key`/,
      );
    } finally {
      anonymous.close();
    }
  });
});
