import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { BinaryReader } from "@bufbuild/protobuf/wire";
import { AccessService } from "./gen/legato/v1/access_service_pb";
import { AgentService } from "./gen/legato/v1/agent_service_pb";
import { AuditService } from "./gen/legato/v1/audit_service_pb";
import { EventService } from "./gen/legato/v1/event_service_pb";
import { PipelineService } from "./gen/legato/v1/pipeline_service_pb";
import { RunService } from "./gen/legato/v1/run_service_pb";

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

/** Connect (JSON) over same-origin fetch: the session cookie goes with every call. */
export const transport = createConnectTransport({
  baseUrl: "/api",
  useBinaryFormat: false,
  interceptors: [sessionInterceptor],
  fetch: (input, init) => globalThis.fetch(input, { ...init, credentials: "same-origin" }),
});

export const pipelines = createClient(PipelineService, transport);
export const runs = createClient(RunService, transport);
export const agents = createClient(AgentService, transport);
export const audit = createClient(AuditService, transport);
export const access = createClient(AccessService, transport);
export const events = createClient(EventService, transport);

/** The server's message of an error (a ConnectError's rawMessage), or String(e). */
export function errorMessage(e: unknown): string {
  if (e instanceof ConnectError) {
    return e.rawMessage || e.message;
  }
  if (e instanceof Error) {
    return e.message;
  }
  return String(e);
}

/** The Connect code of an error, Code.Unknown for anything that is not a ConnectError. */
export function errorCode(e: unknown): Code {
  return e instanceof ConnectError ? e.code : Code.Unknown;
}

const ERROR_INFO_TYPE = "google.rpc.ErrorInfo";

export interface ErrorInfo {
  reason: string;
  domain: string;
  metadata: Record<string, string>;
}

/** Decodes a google.rpc.ErrorInfo (reason = 1, domain = 2, map<string,string> metadata = 3). */
export function decodeErrorInfo(bytes: Uint8Array): ErrorInfo {
  const info: ErrorInfo = { reason: "", domain: "", metadata: {} };
  const reader = new BinaryReader(bytes);
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field === 1 && wireType === 2) {
      info.reason = reader.string();
    } else if (field === 2 && wireType === 2) {
      info.domain = reader.string();
    } else if (field === 3 && wireType === 2) {
      const entry = new BinaryReader(reader.bytes());
      let key = "";
      let value = "";
      while (entry.pos < entry.len) {
        const [f, w] = entry.tag();
        if (f === 1 && w === 2) key = entry.string();
        else if (f === 2 && w === 2) value = entry.string();
        else entry.skip(w);
      }
      info.metadata[key] = value;
    } else {
      reader.skip(wireType);
    }
  }
  return info;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** The google.rpc.ErrorInfo of a ConnectError, when it carries one. */
export function errorInfo(e: unknown): ErrorInfo | undefined {
  if (!(e instanceof ConnectError)) {
    return undefined;
  }
  for (const detail of e.details) {
    if (!("type" in detail) || typeof detail.type !== "string") {
      continue;
    }
    const type = detail.type.replace(/^type\.googleapis\.com\//, "");
    if (type !== ERROR_INFO_TYPE) {
      continue;
    }
    if (detail.value instanceof Uint8Array && detail.value.length > 0) {
      try {
        return decodeErrorInfo(detail.value);
      } catch {
        // Fall through to the debug form below.
      }
    }
    if ("debug" in detail && isRecord(detail.debug)) {
      const d = detail.debug;
      const metadata: Record<string, string> = {};
      if (isRecord(d.metadata)) {
        for (const [k, v] of Object.entries(d.metadata)) metadata[k] = String(v);
      }
      return {
        reason: typeof d.reason === "string" ? d.reason : "",
        domain: typeof d.domain === "string" ? d.domain : "",
        metadata,
      };
    }
  }
  return undefined;
}

/** The ErrorInfo reason of an error (e.g. "PIPELINE_NOT_FOUND"), or "". */
export function errorReason(e: unknown): string {
  return errorInfo(e)?.reason ?? "";
}

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
