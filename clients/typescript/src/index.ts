/**
 * The Legato API client (legato.v1), for any runtime: the generated messages, enums and
 * service descriptors, the service clients over a transport, and the error helpers.
 * `@legato/client/node` and `@legato/client/web` add `createLegatoClient` with a transport
 * for Node (gRPC) or browsers (Connect); both re-export all of this.
 */
export { bearerToken, createServiceClients, type LegatoClient } from "./services.js";
export {
  type BadRequest,
  codeName,
  type DecodedStatus,
  decodeStatus,
  ERROR_DOMAIN,
  type ErrorDetails,
  errorDetails,
  type ErrorInfo,
  errorInfo,
  errorMessage,
  errorReason,
  type FieldViolation,
  fieldViolations,
  type Status,
} from "./errors.js";
export { Code, ConnectError } from "@connectrpc/connect";

// The generated legato.v1 API (src/gen, from proto/ by `npm run gen`).
export * from "./gen/legato/v1/access_pb.js";
export * from "./gen/legato/v1/access_service_pb.js";
export * from "./gen/legato/v1/agent_pb.js";
export * from "./gen/legato/v1/agent_service_pb.js";
export * from "./gen/legato/v1/audit_service_pb.js";
export * from "./gen/legato/v1/event_service_pb.js";
export * from "./gen/legato/v1/lineage_pb.js";
export * from "./gen/legato/v1/lineage_service_pb.js";
export * from "./gen/legato/v1/pipeline_pb.js";
export * from "./gen/legato/v1/pipeline_service_pb.js";
export * from "./gen/legato/v1/run_pb.js";
export * from "./gen/legato/v1/run_service_pb.js";
export * from "./gen/legato/v1/spec_pb.js";
