/**
 * The TypeScript client against a real control plane and agent (test/cluster.ts): apply a
 * pipeline, trigger a run, watch it to the end, read its logs and a step output, and read
 * the reason and field violations of errors — over gRPC (Node) and over Connect (browser).
 */
import { execFile } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { fromJson } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  Code,
  ConnectError,
  decodeStatus,
  errorDetails,
  errorReason,
  fieldViolations,
  LogStream,
  PipelineSpecSchema,
  Role,
  RunStatus,
  StepStatus,
  type WatchRunResponse,
} from "../src/index.js";
import { createLegatoClient } from "../src/node.js";
import { createLegatoClient as createWebClient } from "../src/web.js";
import { type Cluster, startCluster } from "./cluster.js";

const packageDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

/** Three transforms: make orders, keep the positive ones, total them per region. */
const ORDERS = fromJson(PipelineSpecSchema, {
  name: "ts-orders",
  description: "Orders totalled per region, from the TypeScript client's tests.",
  params: { rows: { type: "PARAM_TYPE_INTEGER", default: 12 } },
  steps: [
    {
      name: "extract",
      transform: {
        code: [
          "result = pd.DataFrame({",
          '    "order_id": range(1, params["rows"] + 1),',
          '    "region": ["eu" if i % 2 else "us" for i in range(params["rows"])],',
          '    "amount": [float(i - 2) for i in range(params["rows"])],',
          "})",
          'print(f"generated {len(result)} orders")',
        ].join("\n"),
      },
    },
    { name: "positive", needs: ["extract"], transform: { code: 'result = data[data["amount"] > 0]' } },
    {
      name: "totals",
      needs: ["positive"],
      transform: {
        code: [
          'result = data.groupby("region", as_index=False)["amount"].sum()',
          'print(f"{len(result)} regions")',
        ].join("\n"),
      },
    },
  ],
});

/** `needs` names a step that does not exist, and the schedule's cron is not one. */
const INVALID = fromJson(PipelineSpecSchema, {
  name: "ts-invalid",
  schedule: { cron: "every day", timezone: "UTC" },
  steps: [
    { name: "extract", transform: { code: "result = pd.DataFrame()" } },
    { name: "load", needs: ["extrac"], transform: { code: "result = data" } },
  ],
});

const ENDED = new Set([RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.TIMED_OUT]);

async function thrown(call: () => Promise<unknown>): Promise<ConnectError> {
  try {
    await call();
  } catch (error) {
    expect(error).toBeInstanceOf(ConnectError);
    return error as ConnectError;
  }
  throw new Error("the call succeeded; it was expected to fail");
}

let cluster: Cluster;

beforeAll(async () => {
  // A client without a token falls back to LEGATO_TOKEN: the tests say which one they use.
  delete process.env.LEGATO_TOKEN;
  delete process.env.LEGATO_SERVER;
  cluster = await startCluster();
});

afterAll(async () => {
  await cluster?.stop();
});

describe("over gRPC from Node", () => {
  let runId = "";

  it("applies a pipeline, and applying it unchanged makes no version", async () => {
    const first = await cluster.admin.pipelines.applyPipeline({
      spec: ORDERS,
      message: "from the TypeScript tests",
      requestId: crypto.randomUUID(),
    });
    expect(first.created).toBe(true);
    expect(first.pipeline?.name).toBe("ts-orders");
    expect(first.version?.number).toBe(1);
    expect(first.version?.author).toBe("ts-admin");

    const again = await cluster.admin.pipelines.applyPipeline({ spec: ORDERS, requestId: crypto.randomUUID() });
    expect(again.created).toBe(false);
    expect(again.version?.number).toBe(1);
  });

  it("triggers a run and watches it to the end", async () => {
    const { run, created } = await cluster.admin.runs.triggerRun({
      pipeline: "ts-orders",
      params: { rows: 7 },
      requestId: crypto.randomUUID(),
    });
    expect(created).toBe(true);
    expect(run?.params).toEqual({ rows: 7 });
    runId = run?.id ?? "";
    expect(runId).not.toBe("");

    const events: WatchRunResponse["event"][] = [];
    for await (const response of cluster.admin.runs.watchRun({ id: runId, includeLogs: true })) {
      events.push(response.event);
    }
    // The stream ends by itself when the run does; its last run event is the outcome.
    const runs = events.flatMap((e) => (e.case === "run" ? [e.value] : []));
    expect(runs.length).toBeGreaterThan(0);
    const last = runs[runs.length - 1];
    expect(RunStatus[last.status]).toBe("SUCCEEDED");
    expect(ENDED.has(last.status)).toBe(true);
    const stepsDone = events.flatMap((e) =>
      e.case === "step" && e.value.status === StepStatus.SUCCEEDED ? [e.value.name] : [],
    );
    expect(new Set(stepsDone)).toEqual(new Set(["extract", "positive", "totals"]));
    const logs = events.flatMap((e) => (e.case === "log" ? [e.value] : []));
    expect(logs.map((l) => [l.step, l.text])).toContainEqual(["extract", "generated 7 orders"]);
    const seqs = logs.map((l) => l.seq);
    expect([...seqs].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))).toEqual(seqs);
  });

  it("reads the run's logs, all of them or one step's", async () => {
    const { lines } = await cluster.admin.runs.getRunLogs({ runId });
    const printed = lines.filter((l) => l.stream === LogStream.STDOUT).map((l) => [l.step, l.text]);
    expect(printed).toContainEqual(["extract", "generated 7 orders"]);
    expect(printed).toContainEqual(["totals", "2 regions"]);

    const totals = await cluster.admin.runs.getRunLogs({ runId, step: "totals" });
    expect(totals.lines.length).toBeGreaterThan(0);
    expect(new Set(totals.lines.map((l) => l.step))).toEqual(new Set(["totals"]));
  });

  it("reads a step's output: its summary and first rows", async () => {
    const { summary, rows } = await cluster.admin.runs.getStepOutput({ runId, step: "totals", limit: 10 });
    // rows 0..6 with amount i - 2: positive are i = 3..6 (1, 2, 3, 4); odd i are "eu".
    expect(summary?.rows).toBe(2n);
    expect(summary?.columns.map((c) => c.name)).toEqual(["region", "amount"]);
    expect(summary?.artifactId).not.toBe("");
    const byRegion = Object.fromEntries(rows.map((r) => [r.region, r.amount]));
    expect(byRegion).toEqual({ eu: 4, us: 6 });
  });

  it("says why an invalid spec is refused: reason and one field violation per problem", async () => {
    const error = await thrown(() => cluster.admin.pipelines.applyPipeline({ spec: INVALID }));
    expect(error.code).toBe(Code.InvalidArgument);
    expect(errorReason(error)).toBe("INVALID_PIPELINE_SPEC");
    const violations = fieldViolations(error);
    const fields = violations.map((v) => v.field);
    expect(fields).toContain("steps[1].needs[0]");
    expect(fields.some((f) => f.startsWith("schedule.cron"))).toBe(true);
    const needs = violations.find((v) => v.field === "steps[1].needs[0]");
    expect(needs?.description).toContain("extrac");
    expect(needs?.description).toContain("did you mean 'extract'");

    const details = errorDetails(error);
    expect(details.codeName).toBe("INVALID_ARGUMENT");
    expect(details.domain).toBe("legato.dev");
    expect(details.fieldViolations).toEqual(violations);

    // The same google.rpc.Status, decoded from the gRPC trailer itself.
    const trailer = error.metadata.get("grpc-status-details-bin");
    expect(trailer).not.toBeNull();
    const status = decodeStatus(trailer ?? "");
    expect(status.status.code).toBe(Code.InvalidArgument);
    expect(status.status.message).toBe(error.rawMessage);
    expect(status.errorInfo?.reason).toBe("INVALID_PIPELINE_SPEC");
    expect(status.badRequest?.fieldViolations.map((v) => v.field)).toEqual(fields);

    // Nothing was applied.
    const missing = await thrown(() => cluster.admin.pipelines.getPipeline({ name: "ts-invalid" }));
    expect(missing.code).toBe(Code.NotFound);
    expect(errorReason(missing)).toBe("PIPELINE_NOT_FOUND");
  });

  it("gives the reason and metadata of refused calls", async () => {
    const viewer = createLegatoClient({
      address: cluster.grpcAddress,
      token: await cluster.token(Role.VIEWER, "ts-viewer"),
    });
    try {
      const denied = errorDetails(await thrown(() => viewer.runs.triggerRun({ pipeline: "ts-orders" })));
      expect(denied.code).toBe(Code.PermissionDenied);
      expect(denied.reason).toBe("ROLE_REQUIRED");
      expect(denied.metadata).toMatchObject({ required_role: "operator", role: "viewer" });
      expect((await viewer.pipelines.getPipeline({ name: "ts-orders" })).pipeline?.name).toBe("ts-orders");
    } finally {
      viewer.close();
    }

    const anonymous = createLegatoClient({ address: cluster.grpcAddress });
    try {
      const refused = errorDetails(await thrown(() => anonymous.runs.listRuns({})));
      expect(refused.code).toBe(Code.Unauthenticated);
      expect(refused.reason).toBe("CREDENTIAL_MISSING");
    } finally {
      anonymous.close();
    }

    // The admin token's id with another secret.
    const secret = cluster.adminToken.slice(-1) === "a" ? "b" : "a";
    const forged = createLegatoClient({ address: cluster.grpcAddress, token: cluster.adminToken.slice(0, -1) + secret });
    try {
      expect(errorReason(await thrown(() => forged.runs.listRuns({})))).toBe("INVALID_TOKEN");
    } finally {
      forged.close();
    }

    const notFound = errorDetails(await thrown(() => cluster.admin.runs.getRun({ id: "01nosuchrun" })));
    expect(notFound.code).toBe(Code.NotFound);
    expect(notFound.reason).toBe("RUN_NOT_FOUND");
  });
});

describe("over Connect, as a browser calls the HTTP listener", () => {
  it("applies, triggers, watches and reads outputs with an API token", async () => {
    const web = createWebClient({ baseUrl: cluster.connectUrl, token: cluster.adminToken });
    const { run } = await web.runs.triggerRun({
      pipeline: "ts-orders",
      params: { rows: 3 },
      requestId: crypto.randomUUID(),
    });
    const id = run?.id ?? "";
    let final = RunStatus.UNSPECIFIED;
    const logs: string[] = [];
    for await (const { event } of web.runs.watchRun({ id, includeLogs: true })) {
      if (event.case === "run") final = event.value.status;
      if (event.case === "log") logs.push(`${event.value.step}: ${event.value.text}`);
    }
    expect(RunStatus[final]).toBe("SUCCEEDED");
    expect(logs).toContain("extract: generated 3 orders");
    const { rows } = await web.runs.getStepOutput({ runId: id, step: "positive" });
    // rows 0..2 with amount i - 2: none is positive.
    expect(rows).toEqual([]);
    const extracted = await web.runs.getStepOutput({ runId: id, step: "extract" });
    expect(extracted.summary?.rows).toBe(3n);
  });

  it("decodes the same error details from the Connect error body", async () => {
    const web = createWebClient({ baseUrl: cluster.connectUrl, token: cluster.adminToken });
    const error = await thrown(() => web.pipelines.applyPipeline({ spec: INVALID }));
    const overGrpc = await thrown(() => cluster.admin.pipelines.applyPipeline({ spec: INVALID }));
    expect(errorDetails(error)).toEqual(errorDetails(overGrpc));
    expect(errorReason(error)).toBe("INVALID_PIPELINE_SPEC");
    expect(fieldViolations(error).map((v) => v.field)).toContain("steps[1].needs[0]");

    const anonymous = createWebClient({ baseUrl: cluster.connectUrl });
    const refused = errorDetails(await thrown(() => anonymous.pipelines.listPipelines({})));
    expect(refused.code).toBe(Code.Unauthenticated);
    expect(refused.reason).toBe("CREDENTIAL_MISSING");
  });

  it("is a Connect client from Node too (createLegatoClient with baseUrl)", async () => {
    const legato = createLegatoClient({ baseUrl: cluster.connectUrl, token: cluster.adminToken });
    const { pipelines } = await legato.pipelines.listPipelines({});
    expect(pipelines.map((p) => p.name)).toContain("ts-orders");
  });
});

describe("the built package in plain Node", () => {
  it("imports @legato/client/node from dist and calls the server, with LEGATO_SERVER and LEGATO_TOKEN", async () => {
    const script = [
      'import { createLegatoClient, errorReason } from "@legato/client/node";',
      "const legato = createLegatoClient();",
      "const caller = await legato.access.getCaller({});",
      'const reason = await legato.runs.getRun({ id: "01nosuchrun" }).then(() => "", errorReason);',
      "console.log(JSON.stringify({ name: caller.name, reason }));",
    ].join("\n");
    const { stdout } = await promisify(execFile)(process.execPath, ["--input-type=module", "-e", script], {
      cwd: packageDir,
      env: { ...process.env, LEGATO_SERVER: cluster.grpcAddress, LEGATO_TOKEN: cluster.adminToken },
      timeout: 30_000,
    });
    expect(JSON.parse(stdout)).toEqual({ name: "ts-admin", reason: "RUN_NOT_FOUND" });
  });
});
