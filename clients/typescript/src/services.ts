/**
 * The service clients of legato.v1 over one transport, whichever it is: gRPC from Node
 * (`./node.ts`), Connect from a browser (`./web.ts`), or a transport of your own.
 */
import { type Client, createClient, type Interceptor, type Transport } from "@connectrpc/connect";
import { AccessService } from "./gen/legato/v1/access_service_pb.js";
import { AgentService } from "./gen/legato/v1/agent_service_pb.js";
import { AuditService } from "./gen/legato/v1/audit_service_pb.js";
import { EventService } from "./gen/legato/v1/event_service_pb.js";
import { PipelineService } from "./gen/legato/v1/pipeline_service_pb.js";
import { RunService } from "./gen/legato/v1/run_service_pb.js";

/** One client per service of the Legato API, sharing a transport. */
export interface LegatoClient {
  readonly transport: Transport;
  /** Apply, validate, version, diff, roll back and archive pipelines; schedules. */
  readonly pipelines: Client<typeof PipelineService>;
  /** Trigger, watch, cancel and rerun runs; their logs, step outputs and backfills. */
  readonly runs: Client<typeof RunService>;
  /** Publish events that start the pipelines subscribed to them. */
  readonly events: Client<typeof EventService>;
  /** The agent fleet (ListAgents, DrainAgent) and artifacts (DownloadArtifact). */
  readonly agents: Client<typeof AgentService>;
  /** The caller (GetCaller), API tokens, agent enrolments and sign-in links. */
  readonly access: Client<typeof AccessService>;
  /** The activity log (ListAuditEvents). */
  readonly audit: Client<typeof AuditService>;
}

/** The service clients of legato.v1 over `transport`. */
export function createServiceClients(transport: Transport): LegatoClient {
  return {
    transport,
    pipelines: createClient(PipelineService, transport),
    runs: createClient(RunService, transport),
    events: createClient(EventService, transport),
    agents: createClient(AgentService, transport),
    access: createClient(AccessService, transport),
    audit: createClient(AuditService, transport),
  };
}

/**
 * Sends `authorization: Bearer <token>` with every call: an API token (`lgt_…`, from
 * `legato tokens create`) whose role decides what the caller may do (docs/api.md#access).
 */
export function bearerToken(token: string): Interceptor {
  if (token === "") {
    throw new Error(
      "token is empty: pass the API token secret (lgt_…) that `legato tokens create NAME --role ROLE` printed",
    );
  }
  if (/\s/.test(token)) {
    throw new Error(
      `token ${JSON.stringify(token.slice(0, 8) + "…")} holds white space (a line end read from a ` +
        "file?): pass the secret alone, e.g. token.trim()",
    );
  }
  const value = `Bearer ${token}`;
  return (next) => (req) => {
    req.header.set("authorization", value);
    return next(req);
  };
}
