/**
 * The Legato client for Node: gRPC over HTTP/2 to the control plane's gRPC port (its
 * `--listen`, 7470 by default), or the Connect protocol to its HTTP listener.
 *
 *     const legato = createLegatoClient({ address: "127.0.0.1:7470", token: process.env.LEGATO_TOKEN });
 *     const { run } = await legato.runs.triggerRun({ pipeline: "etl" });
 */
import os from "node:os";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import {
  createConnectTransport,
  createGrpcTransport,
  Http2SessionManager,
} from "@connectrpc/connect-node";
import { bearerToken, createServiceClients, type LegatoClient } from "./services.js";

export * from "./index.js";

export interface NodeClientOptions {
  /**
   * The control plane's gRPC address HOST:PORT (its `--listen`); default the LEGATO_SERVER
   * variable, else localhost:7470. Calls go over gRPC (HTTP/2).
   */
  readonly address?: string;
  /**
   * Instead of `address`: the Connect endpoint of the HTTP listener, e.g.
   * `http://127.0.0.1:7471/api`. Calls go over the Connect protocol (HTTP/1.1, JSON).
   */
  readonly baseUrl?: string;
  /** An API token (lgt_…); default the LEGATO_TOKEN variable. */
  readonly token?: string;
  /**
   * The CA certificate (PEM) the server's certificate is checked against; turns TLS on for
   * `address` (https). Without it a TLS connection trusts Node's CA store.
   */
  readonly ca?: string | Buffer;
  /** A client certificate (PEM), for a server started with --client-ca (mTLS). */
  readonly cert?: string | Buffer;
  /** The client certificate's private key (PEM). */
  readonly key?: string | Buffer;
  /** Use TLS for `address` even without `ca` (a certificate from a public CA). */
  readonly tls?: boolean;
  /**
   * The user this client acts for, sent as `legato-user` and kept in the activity log beside
   * the token's name (never trusted); default the OS user.
   */
  readonly user?: string;
  /** A deadline for every call, in milliseconds (none by default: streams may last). */
  readonly timeoutMs?: number;
  /** More interceptors, run after the ones that add the credentials. */
  readonly interceptors?: readonly Interceptor[];
}

/** The service clients plus `close()`, which ends the client's HTTP/2 connection. */
export interface NodeLegatoClient extends LegatoClient {
  /** The URL calls go to (`http://HOST:PORT` for gRPC, the `baseUrl` for Connect). */
  readonly url: string;
  /** Ends the connection and the calls still open on it (a gRPC client only). */
  close(): void;
}

/** A Legato client for Node; see NodeClientOptions. */
export function createLegatoClient(options: NodeClientOptions = {}): NodeLegatoClient {
  const token = options.token ?? process.env.LEGATO_TOKEN;
  const tls = options.tls ?? (options.ca !== undefined || options.cert !== undefined);
  const target =
    options.baseUrl ?? options.address ?? process.env.LEGATO_SERVER ?? "localhost:7470";
  const interceptors: Interceptor[] = [
    connectionHints(target, {
      tls: tls || target.startsWith("https:"),
      option: options.baseUrl !== undefined ? "baseUrl" : "address (LEGATO_SERVER)",
    }),
  ];
  if (token !== undefined) {
    interceptors.push(bearerToken(token));
  }
  const user = options.user ?? osUser();
  if (user !== "") {
    interceptors.push((next) => (req) => {
      req.header.set("legato-user", user);
      return next(req);
    });
  }
  interceptors.push(...(options.interceptors ?? []));
  const tlsOptions = {
    ...(options.ca !== undefined ? { ca: options.ca } : {}),
    ...(options.cert !== undefined ? { cert: options.cert } : {}),
    ...(options.key !== undefined ? { key: options.key } : {}),
  };
  if ((options.cert === undefined) !== (options.key === undefined)) {
    throw new Error("cert and key go together: pass both (mTLS) or neither");
  }

  if (options.baseUrl !== undefined) {
    if (options.address !== undefined) {
      throw new Error(
        `pass address (gRPC, ${JSON.stringify(options.address)}) or baseUrl (Connect, ` +
          `${JSON.stringify(options.baseUrl)}), not both`,
      );
    }
    const url = checkBaseUrl(options.baseUrl);
    const transport = createConnectTransport({
      httpVersion: "1.1",
      baseUrl: url,
      interceptors,
      nodeOptions: tlsOptions,
      ...(options.timeoutMs !== undefined ? { defaultTimeoutMs: options.timeoutMs } : {}),
    });
    return { ...createServiceClients(transport), url, close: () => undefined };
  }

  const url = `${tls ? "https" : "http"}://${checkAddress(target)}`;
  const sessionManager = new Http2SessionManager(url, {}, tlsOptions);
  const transport = createGrpcTransport({
    baseUrl: url,
    sessionManager,
    interceptors,
    ...(options.timeoutMs !== undefined ? { defaultTimeoutMs: options.timeoutMs } : {}),
  });
  return {
    ...createServiceClients(transport),
    url,
    close: () => {
      sessionManager.abort();
    },
  };
}

/**
 * Says what to fix when a call fails because the connection does: the server is not there,
 * or TLS is on one side only, or a certificate is not trusted or not given.
 */
function connectionHints(target: string, how: ConnectionSettings): Interceptor {
  return (next) => async (req) => {
    try {
      return await next(req);
    } catch (error) {
      const original = ConnectError.from(error);
      const hint = req.signal.aborted ? "" : connectionHint(original, target, how);
      if (hint === "") {
        throw error;
      }
      throw new ConnectError(
        `cannot connect to the Legato server at ${target}: ${hint} (${original.rawMessage})`,
        Code.Unavailable,
        original.metadata,
        undefined,
        original,
      );
    }
  };
}

const UNTRUSTED = new Set([
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "CERT_SIGNATURE_FAILURE",
]);
const UNREACHABLE = new Set(["ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN", "EHOSTUNREACH", "ENETUNREACH", "ETIMEDOUT"]);

interface ConnectionSettings {
  /** Whether the client speaks TLS. */
  readonly tls: boolean;
  /** The option that says where the server is. */
  readonly option: string;
}

function connectionHint(error: ConnectError, target: string, { tls, option }: ConnectionSettings): string {
  const cause: unknown = error.cause;
  const code =
    typeof cause === "object" && cause !== null && "code" in cause && typeof cause.code === "string"
      ? cause.code
      : "";
  const authority = target.replace(/^https?:\/\//, "").replace(/\/.*$/, "");
  const host = authority.startsWith("[") ? authority.slice(0, authority.indexOf("]") + 1) : authority.replace(/:.*$/, "");
  if (UNTRUSTED.has(code)) {
    return "its certificate is not signed by a CA this client trusts; pass `ca` with the CA that signed it";
  }
  if (code === "ERR_TLS_CERT_ALTNAME_INVALID") {
    return (
      `its certificate does not name ${JSON.stringify(host)}; connect with a name it has, or make one ` +
      `that does (\`legato certs create --host ${host}\`)`
    );
  }
  if (code === "ERR_SSL_WRONG_VERSION_NUMBER") {
    return "it does not serve TLS; drop `ca`, `cert`, `key` and `tls`, or start the server with --tls-cert and --tls-key";
  }
  if (UNREACHABLE.has(code)) {
    return (
      "nothing answers there; is it running? Start one with `legato up` or `legato server`, or " +
      `point \`${option}\` at it`
    );
  }
  if (error.code === Code.Canceled && /stream closed with error code CANCEL/.test(error.rawMessage)) {
    return tls
      ? "it closed the connection during the TLS handshake; if it requires client certificates " +
          "(mTLS, --client-ca), pass `cert` and `key` with a certificate that CA signed"
      : "it closed the connection at once; if it serves TLS, pass `ca` with the CA that signed its " +
          "certificate (or `tls: true`)";
  }
  return "";
}

function checkAddress(address: string): string {
  if (address.includes("://")) {
    throw new Error(
      `address ${JSON.stringify(address)} is a URL: an address is HOST:PORT, the control ` +
        "plane's gRPC --listen; drop the scheme (e.g. \"127.0.0.1:7470\"), pass tls: true or ca " +
        "for TLS, or pass baseUrl for the Connect endpoint of its HTTP listener",
    );
  }
  const match = /^(\[[0-9a-fA-F:.]+\]|[^:/\s[\]]+):(\d{1,5})$/.exec(address);
  if (match === null || Number(match[2]) > 65535) {
    throw new Error(
      `address ${JSON.stringify(address)} is not HOST:PORT: give the control plane's gRPC ` +
        "--listen address, e.g. \"127.0.0.1:7470\" or \"[::1]:7470\"",
    );
  }
  return address;
}

function checkBaseUrl(baseUrl: string): string {
  let url: URL;
  try {
    url = new URL(baseUrl);
  } catch {
    throw new Error(
      `baseUrl ${JSON.stringify(baseUrl)} is not a URL: give the HTTP listener's Connect ` +
        "endpoint, e.g. \"http://127.0.0.1:7471/api\"",
    );
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new Error(
      `baseUrl ${JSON.stringify(baseUrl)} is not http(s): give the HTTP listener's Connect ` +
        "endpoint, e.g. \"http://127.0.0.1:7471/api\"",
    );
  }
  return baseUrl.replace(/\/+$/, "");
}

function osUser(): string {
  try {
    return os.userInfo().username;
  } catch {
    return "";
  }
}
