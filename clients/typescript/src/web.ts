/**
 * The Legato client for browsers: the Connect protocol (JSON over fetch) to the control
 * plane's HTTP listener, at `/api` on the web UI's origin. In the web UI the session cookie
 * authenticates the calls; a page or script elsewhere passes an API token instead.
 *
 *     const legato = createLegatoClient({ baseUrl: "https://legato.example.com/api", token });
 *     const { pipelines } = await legato.pipelines.listPipelines({});
 */
import type { Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { bearerToken, createServiceClients, type LegatoClient } from "./services.js";

export * from "./index.js";

export interface WebClientOptions {
  /** The Connect endpoint: the HTTP listener's `/api`; default "/api" (same origin). */
  readonly baseUrl?: string;
  /** An API token (lgt_…), sent as `authorization: Bearer`; the web UI needs none. */
  readonly token?: string;
  /** fetch's `credentials`; default "same-origin", so the UI's session cookie goes along. */
  readonly credentials?: RequestCredentials;
  /** Another fetch (a test's, or one that adds headers). */
  readonly fetch?: typeof globalThis.fetch;
  /** The binary protobuf format instead of JSON (which the network tab shows readably). */
  readonly useBinaryFormat?: boolean;
  /** A deadline for every call, in milliseconds. */
  readonly timeoutMs?: number;
  /** More interceptors, run after the one that adds the token. */
  readonly interceptors?: readonly Interceptor[];
}

/** A Legato client for browsers (and any runtime with fetch); see WebClientOptions. */
export function createLegatoClient(options: WebClientOptions = {}): LegatoClient {
  const interceptors: Interceptor[] = [];
  if (options.token !== undefined) {
    interceptors.push(bearerToken(options.token));
  }
  interceptors.push(...(options.interceptors ?? []));
  const credentials = options.credentials ?? "same-origin";
  const baseFetch = options.fetch;
  const transport = createConnectTransport({
    baseUrl: (options.baseUrl ?? "/api").replace(/\/+$/, ""),
    useBinaryFormat: options.useBinaryFormat ?? false,
    interceptors,
    fetch: (input, init) => (baseFetch ?? globalThis.fetch)(input, { ...init, credentials }),
    ...(options.timeoutMs !== undefined ? { defaultTimeoutMs: options.timeoutMs } : {}),
  });
  return createServiceClients(transport);
}
