/**
 * A real Legato cluster for the end-to-end tests: `legato server` on SQLite in a temporary
 * directory (gRPC and HTTP listeners on free loopback ports), an admin token made with
 * `legato tokens create --db`, and one `legato agent` process enrolled through the API.
 * The `legato` executable is LEGATO_BIN, else the repository's ../../.venv/bin/legato.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { closeSync, existsSync, openSync, readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { AgentState, Code, ConnectError, Role } from "../src/index.js";
import { createLegatoClient, type NodeClientOptions, type NodeLegatoClient } from "../src/node.js";

const run = promisify(execFile);
const packageDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

export const LEGATO_BIN = process.env.LEGATO_BIN ?? path.resolve(packageDir, "../../.venv/bin/legato");

export interface ClusterOptions {
  /** Start an agent (default true). */
  readonly agent?: boolean;
  /** Serve the HTTP listener (Connect, default true). */
  readonly http?: boolean;
  /** Runs in the cluster's directory before the server starts (e.g. to make certificates). */
  readonly prepare?: (dir: string) => Promise<void>;
  /** More `legato server` arguments; `{dir}` stands for the cluster's directory. */
  readonly serverArgs?: readonly string[];
  /** More options of the admin client (e.g. the CA of a TLS server). */
  readonly client?: (dir: string) => NodeClientOptions;
}

export interface Cluster {
  readonly dir: string;
  readonly grpcAddress: string;
  /** The Connect endpoint of the HTTP listener ("" without one). */
  readonly connectUrl: string;
  readonly adminToken: string;
  /** An admin client over gRPC. */
  readonly admin: NodeLegatoClient;
  readonly agentName: string;
  /** A new API token of `role`, made through the API. */
  token(role: Role, name: string): Promise<string>;
  /** The server's and agent's output so far (for failure messages). */
  logs(): string;
  stop(): Promise<void>;
}

interface Started {
  grpcPort: number;
  httpPort: number;
}

export async function startCluster(options: ClusterOptions = {}): Promise<Cluster> {
  if (!existsSync(LEGATO_BIN)) {
    throw new Error(
      `the legato executable ${LEGATO_BIN} does not exist: install Legato in the repository's ` +
        "virtualenv (python3 -m venv .venv && .venv/bin/pip install -e '.[dev]') or set " +
        "LEGATO_BIN to a legato executable",
    );
  }
  const dir = await mkdtemp(path.join(os.tmpdir(), "legato-ts-"));
  const db = `sqlite:///${dir}/legato.db`;
  const serverLog = path.join(dir, "server.log");
  const agentLog = path.join(dir, "agent.log");
  const children: ChildProcess[] = [];
  const logs = (): string =>
    [serverLog, agentLog]
      .filter((file) => existsSync(file))
      .map((file) => `--- ${path.basename(file)}\n${readFileSync(file, "utf8").slice(-4000)}`)
      .join("\n");
  const stop = async (): Promise<void> => {
    for (const child of children.reverse()) {
      await stopProcess(child);
    }
    await rm(dir, { recursive: true, force: true });
  };

  try {
    await options.prepare?.(dir);
    const { stdout } = await run(LEGATO_BIN, [
      "tokens",
      "create",
      "ts-admin",
      "--role",
      "admin",
      "--db",
      db,
      "-q",
    ]);
    const adminToken = stdout.trim();

    const server = spawnLogged(
      LEGATO_BIN,
      [
        "server",
        "--db",
        db,
        "--listen",
        "127.0.0.1:0",
        "--http-listen",
        options.http === false ? "off" : "127.0.0.1:0",
        "--log-format",
        "json",
        "--shutdown-grace",
        "1s",
        ...(options.serverArgs ?? []).map((arg) => arg.replaceAll("{dir}", dir)),
      ],
      serverLog,
      {},
    );
    children.push(server);
    const { grpcPort, httpPort } = await waitForServer(server, serverLog, options.http !== false);
    const grpcAddress = `127.0.0.1:${grpcPort}`;
    const admin = createLegatoClient({ address: grpcAddress, token: adminToken, ...options.client?.(dir) });
    const cluster = {
      dir,
      grpcAddress,
      connectUrl: httpPort === 0 ? "" : `http://127.0.0.1:${httpPort}/api`,
      adminToken,
      admin,
      agentName: "",
      token: async (role: Role, name: string) => (await admin.access.createToken({ name, role })).secret,
      logs,
      stop: async () => {
        admin.close();
        await stop();
      },
    };
    if (options.agent === false) {
      // The server answers calls: wait for the first one through the client under test.
      await waitFor(async () => (await admin.access.getCaller({})).name === "ts-admin", "the first call", server, logs);
      return cluster;
    }

    const agentName = "ts-agent-1";
    const enrolment = await admin.access.createAgentToken({ agent: agentName, connections: ["*"] });
    const launched = Date.now();
    const agent = spawnLogged(
      LEGATO_BIN,
      [
        "agent",
        "--server",
        grpcAddress,
        "--slots",
        "2",
        "--workdir",
        path.join(dir, agentName),
        "--grace",
        "1s",
        "--log-format",
        "json",
      ],
      agentLog,
      { LEGATO_AGENT_TOKEN: enrolment.secret },
    );
    children.push(agent);
    await waitFor(
      async () => {
        const { agents } = await admin.agents.listAgents({});
        return agents.some(
          (a) =>
            a.name === agentName &&
            a.state === AgentState.CONNECTED &&
            Number(a.connectTime?.seconds ?? 0n) * 1000 >= launched - 1000,
        );
      },
      `agent ${agentName} to connect`,
      agent,
      logs,
    );

    return { ...cluster, agentName };
  } catch (error) {
    const tail = logs();
    await stop();
    throw new Error(`${error instanceof Error ? error.message : String(error)}\n${tail}`, { cause: error });
  }
}

function spawnLogged(
  command: string,
  args: string[],
  logFile: string,
  env: Record<string, string>,
): ChildProcess {
  const fd = openSync(logFile, "a");
  try {
    // A process group of its own, so that stopping it stops the step processes it started.
    return spawn(command, args, {
      stdio: ["ignore", fd, fd],
      env: { ...process.env, ...env },
      detached: true,
    });
  } finally {
    closeSync(fd);
  }
}

/** The ports of the server's `http_listening` (when `http`) and `server_started` log events. */
async function waitForServer(server: ChildProcess, logFile: string, http: boolean): Promise<Started> {
  let started: Started | undefined;
  await waitFor(
    () => {
      let httpPort = 0;
      for (const line of readFileSync(logFile, "utf8").split("\n")) {
        if (!line.startsWith("{")) continue;
        const event = JSON.parse(line) as { event?: string; port?: number };
        if (event.event === "http_listening" && event.port !== undefined) httpPort = event.port;
        if (event.event === "server_started" && event.port !== undefined && (httpPort !== 0 || !http)) {
          started = { grpcPort: event.port, httpPort };
        }
      }
      return Promise.resolve(started !== undefined);
    },
    "legato server to start",
    server,
    () => readFileSync(logFile, "utf8"),
  );
  if (started === undefined) throw new Error("unreachable: waitFor returned without a start");
  return started;
}

async function waitFor(
  condition: () => Promise<boolean>,
  what: string,
  child: ChildProcess,
  logs: () => string,
  timeoutMs = 45_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`waiting for ${what}: the process exited (${child.exitCode ?? child.signalCode})\n${logs()}`);
    }
    try {
      if (await condition()) return;
    } catch (error) {
      if (!(error instanceof ConnectError && error.code === Code.Unavailable)) throw error;
      lastError = error;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`${what} did not happen in ${timeoutMs / 1000}s (last error: ${String(lastError)})\n${logs()}`);
}

async function stopProcess(child: ChildProcess): Promise<void> {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const signal = (name: NodeJS.Signals): void => {
    try {
      process.kill(-(child.pid as number), name);
    } catch {
      // Already gone.
    }
  };
  signal("SIGTERM");
  const timer = setTimeout(() => signal("SIGKILL"), 5_000);
  await exited;
  clearTimeout(timer);
}
