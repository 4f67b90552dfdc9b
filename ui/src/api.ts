import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { createLegatoClient } from "@legato/client/web";

const unauthenticatedListeners = new Set<() => void>();

/** Calls `listener` whenever an API call is refused as Unauthenticated (the session ended). */
export function onUnauthenticated(listener: () => void): () => void {
  unauthenticatedListeners.add(listener);
  return () => {
    unauthenticatedListeners.delete(listener);
  };
}

const sessionInterceptor: Interceptor = (next) => async (req) => {
  try {
    return await next(req);
  } catch (e) {
    if (e instanceof ConnectError && e.code === Code.Unauthenticated) {
      for (const listener of unauthenticatedListeners) listener();
    }
    throw e;
  }
};

/**
 * The API client (clients/typescript): Connect (JSON) over same-origin fetch, so the session
 * cookie goes with every call.
 */
const legato = createLegatoClient({
  baseUrl: "/api",
  credentials: "same-origin",
  interceptors: [sessionInterceptor],
});

export const transport = legato.transport;
export const pipelines = legato.pipelines;
export const runs = legato.runs;
export const agents = legato.agents;
export const audit = legato.audit;
export const access = legato.access;
export const events = legato.events;

/** The Connect code of an error, Code.Unknown for anything that is not a ConnectError. */
export function errorCode(e: unknown): Code {
  return e instanceof ConnectError ? e.code : Code.Unknown;
}

export { errorInfo, errorMessage, errorReason, fieldViolations } from "@legato/client";

/** A random UUID for a mutation's request_id (one per user action). */
export function newRequestId(): string {
  if (typeof crypto !== "undefined" && typeof crypto.randomUUID === "function") {
    return crypto.randomUUID();
  }
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

export { Code, ConnectError };
