/**
 * What a failed call says, decoded: every Legato error is a status code and message plus a
 * `google.rpc.Status` whose details hold an `ErrorInfo` (domain `legato.dev`, an UPPER_SNAKE
 * `reason`, metadata) and, for invalid specs and requests, a `BadRequest` with one field
 * violation per problem (docs/api.md#errors lists the reasons).
 *
 * Both transports deliver the details to `ConnectError.details`: gRPC in the
 * `grpc-status-details-bin` trailer, Connect in the error body's `details`. The helpers here
 * read them from any thrown value; `decodeStatus` decodes the trailer's bytes for code that
 * reads them itself (e.g. with @grpc/grpc-js).
 */
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import { fromBinary } from "@bufbuild/protobuf";
import { base64Decode } from "@bufbuild/protobuf/wire";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  type BadRequest,
  BadRequestSchema,
  type ErrorInfo,
  ErrorInfoSchema,
} from "./gen/google/rpc/error_details_pb.js";
import { type Status, StatusSchema } from "./gen/google/rpc/status_pb.js";

export type { BadRequest, ErrorInfo, Status };

/** The `ErrorInfo.domain` of every error the Legato server raises. */
export const ERROR_DOMAIN = "legato.dev";

/** One problem of a request: a field path (`steps[1].needs[0]`) and what is wrong with it. */
export interface FieldViolation {
  readonly field: string;
  readonly description: string;
  /** An UPPER_SNAKE reason of this violation, when the server gives one. */
  readonly reason: string;
}

/** Everything a failed call says, whatever the transport. */
export interface ErrorDetails {
  /** The status code (Code.NotFound, Code.InvalidArgument, ...). */
  readonly code: Code;
  /** Its gRPC name, e.g. "INVALID_ARGUMENT". */
  readonly codeName: string;
  /** The server's message, without the "[code]" prefix ConnectError.message has. */
  readonly message: string;
  /** The ErrorInfo reason, e.g. "INVALID_PIPELINE_SPEC"; "" when the error carries none. */
  readonly reason: string;
  readonly domain: string;
  readonly metadata: Readonly<Record<string, string>>;
  readonly fieldViolations: readonly FieldViolation[];
}

/** The gRPC name of a code: Code.InvalidArgument → "INVALID_ARGUMENT". */
export function codeName(code: Code): string {
  const name = Code[code] as string | undefined;
  return name === undefined ? `CODE_${code}` : name.replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase();
}

/** The ErrorInfo of an error, when it is a ConnectError that carries one. */
export function errorInfo(error: unknown): ErrorInfo | undefined {
  return error instanceof ConnectError ? error.findDetails(ErrorInfoSchema)[0] : undefined;
}

/** The ErrorInfo reason of an error (e.g. "PIPELINE_NOT_FOUND"), or "". */
export function errorReason(error: unknown): string {
  return errorInfo(error)?.reason ?? "";
}

/** The BadRequest field violations of an error, in the server's order (none: []). */
export function fieldViolations(error: unknown): FieldViolation[] {
  if (!(error instanceof ConnectError)) {
    return [];
  }
  return error
    .findDetails(BadRequestSchema)
    .flatMap((bad) => bad.fieldViolations)
    .map((v) => ({ field: v.field, description: v.description, reason: v.reason }));
}

/** The server's message of an error (a ConnectError's rawMessage), or String(error). */
export function errorMessage(error: unknown): string {
  if (error instanceof ConnectError) {
    return error.rawMessage || error.message;
  }
  if (error instanceof Error) {
    return error.message;
  }
  return String(error);
}

/** Code, message, reason, metadata and field violations of any thrown value. */
export function errorDetails(error: unknown): ErrorDetails {
  const connectError = ConnectError.from(error);
  const info = errorInfo(connectError);
  return {
    code: connectError.code,
    codeName: codeName(connectError.code),
    message: connectError.rawMessage,
    reason: info?.reason ?? "",
    domain: info?.domain ?? "",
    metadata: { ...(info?.metadata ?? {}) },
    fieldViolations: fieldViolations(connectError),
  };
}

/** A decoded `google.rpc.Status` with its ErrorInfo and BadRequest unpacked. */
export interface DecodedStatus {
  readonly status: Status;
  readonly errorInfo: ErrorInfo | undefined;
  readonly badRequest: BadRequest | undefined;
}

/**
 * Decodes the bytes of a `grpc-status-details-bin` trailer (a binary `google.rpc.Status`;
 * gRPC libraries hand it over base64-decoded, or pass a base64 string here).
 */
export function decodeStatus(bytes: Uint8Array | string): DecodedStatus {
  const raw = typeof bytes === "string" ? base64Decode(bytes) : bytes;
  const status = fromBinary(StatusSchema, raw);
  let info: ErrorInfo | undefined;
  let badRequest: BadRequest | undefined;
  for (const detail of status.details) {
    info ??= anyUnpack(detail, ErrorInfoSchema);
    badRequest ??= anyUnpack(detail, BadRequestSchema);
  }
  return { status, errorInfo: info, badRequest };
}
