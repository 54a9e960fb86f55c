// The real system under test: a fresh PostgreSQL database (on DATABASE_URL's server, dropped
// afterwards), migrated by the real `api migrate`, and the real `api serve` and `worker` binaries
// (target/debug, built by scripts/console.sh e2e). The api listens on a port the OS picks; its
// address is read from its own "api listening" log line, so no port can be taken in between.

import { type ChildProcess, execFile, spawn } from "node:child_process";
import { createWriteStream, mkdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const run = promisify(execFile);

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const TARGET = resolve(REPO, process.env.CARGO_TARGET_DIR ?? "target");
const BIN_DIR = process.env.WIREHOOK_BIN_DIR ?? join(TARGET, "debug");
export const OUT_DIR = join(TARGET, "console-e2e");
const JWT_SECRET = "console-e2e-jwt-secret-0123456789";

export interface Stack {
  /** `http://127.0.0.1:PORT` of the api. */
  baseURL: string;
  token: string;
  /** An authorized JSON call to the REST API, as the platform's other services make them. */
  call(method: string, path: string, body?: unknown): Promise<{ status: number; json: any }>;
  stop(): Promise<void>;
}

function log(name: string): NodeJS.WritableStream {
  mkdirSync(OUT_DIR, { recursive: true });
  return createWriteStream(join(OUT_DIR, `${name}.log`));
}

/** Resolves when `child` exits (at once if it already has). */
function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((done) => child.once("exit", () => done()));
}

async function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill("SIGTERM");
  const killed = new Promise<void>((done) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      done();
    }, 10_000);
    void exited(child).then(() => {
      clearTimeout(timer);
      done();
    });
  });
  await killed;
  await exited(child);
}

async function psql(adminUrl: string, sql: string): Promise<void> {
  await run("psql", ["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", adminUrl, "-c", sql]);
}

export async function startStack(): Promise<Stack> {
  const adminUrl = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
  const name = `wirehook_console_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 8)}`;
  await psql(adminUrl, `CREATE DATABASE "${name}"`);
  const dbUrl = new URL(adminUrl);
  dbUrl.pathname = `/${name}`;
  const children: ChildProcess[] = [];
  const stop = async (): Promise<void> => {
    await Promise.all(children.map(stopProcess));
    await psql(adminUrl, `DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`).catch((e: unknown) => {
      console.error(`could not drop test database ${name}: ${String(e)}`);
    });
  };
  try {
    const env = {
      ...process.env,
      DATABASE_URL: dbUrl.toString(),
      JWT_SECRET,
      WIREHOOK_ENV: "development",
      RUST_LOG: "info,sqlx=warn",
      LOG_FORMAT: "json",
    };
    await run(join(BIN_DIR, "api"), ["migrate"], { env });

    const api = spawn(join(BIN_DIR, "api"), ["serve"], {
      env: { ...env, API_ADDR: "127.0.0.1:0", DELIVERY_TIMEOUT_SECS: "5" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    children.push(api);
    const apiLog = log("api");
    api.stdout?.pipe(apiLog);
    const addr = await new Promise<string>((found, failed) => {
      const lines = createInterface({ input: api.stderr! });
      lines.on("line", (line) => {
        apiLog.write(`${line}\n`);
        try {
          const entry = JSON.parse(line) as { fields?: { message?: string; addr?: string } };
          if (entry.fields?.message === "api listening" && entry.fields.addr !== undefined) found(entry.fields.addr);
        } catch {
          /* not a JSON log line */
        }
      });
      void exited(api).then(() => failed(new Error(`api exited before listening; see ${join(OUT_DIR, "api.log")}`)));
    });
    const baseURL = `http://${addr}`;

    const worker = spawn(join(BIN_DIR, "worker"), [], {
      env: {
        ...env,
        METRICS_ADDR: "127.0.0.1:0",
        WORKER_NAME: `console-e2e-${process.pid}`,
        WORKER_POLL_INTERVAL_MS: "100",
        DELIVERY_TIMEOUT_SECS: "5",
        WORKER_SHUTDOWN_GRACE_SECS: "2",
        QUEUE_SAMPLE_SECS: "1",
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    children.push(worker);
    const workerLog = log("worker");
    worker.stdout?.pipe(workerLog);
    worker.stderr?.pipe(workerLog);

    const { stdout } = await run(join(BIN_DIR, "api"), ["token", "--sub", "console-e2e", "--ttl", "2h"], { env });
    const token = stdout.trim();

    const call = async (method: string, path: string, body?: unknown): Promise<{ status: number; json: any }> => {
      const init: RequestInit = { method, headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" } };
      if (body !== undefined) init.body = JSON.stringify(body);
      const res = await fetch(baseURL + path, init);
      return { status: res.status, json: await res.json().catch(() => null) };
    };
    // The api answers as soon as it listens; the worker is ready when its first poll can run,
    // which the tests wait for through the deliveries they watch, never through a sleep.
    const ready = await fetch(`${baseURL}/readyz`);
    if (ready.status !== 200) throw new Error(`api /readyz answered ${ready.status}`);
    return { baseURL, token, call, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}
