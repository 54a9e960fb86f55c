// A real HTTP receiver on 127.0.0.1 that the deliveries go to: it answers 200 "ok", or fails the
// next N requests with a scripted status and body, and records what it got.

import { type IncomingHttpHeaders, type Server, createServer } from "node:http";
import type { AddressInfo } from "node:net";

export interface Received {
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
  status: number;
}

export class Receiver {
  readonly requests: Received[] = [];
  private failures: { status: number; body: string }[] = [];
  private waiters: { count: number; done: () => void }[] = [];

  private constructor(
    private readonly server: Server,
    readonly url: string,
  ) {}

  static async start(): Promise<Receiver> {
    let self: Receiver | undefined;
    const server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => self?.answer(req.url ?? "/", req.headers, Buffer.concat(chunks).toString("utf8"), res));
    });
    await new Promise<void>((ready) => server.listen(0, "127.0.0.1", ready));
    const { port } = server.address() as AddressInfo;
    self = new Receiver(server, `http://127.0.0.1:${port}`);
    return self;
  }

  /** The next `n` requests are answered `status` with `body`. */
  failNext(n: number, status = 500, body = "receiver down for maintenance"): void {
    for (let i = 0; i < n; i++) this.failures.push({ status, body });
  }

  /** Resolves once `count` requests in all have been answered. */
  received(count: number): Promise<void> {
    if (this.requests.length >= count) return Promise.resolve();
    return new Promise((done) => this.waiters.push({ count, done }));
  }

  private answer(path: string, headers: IncomingHttpHeaders, body: string, res: import("node:http").ServerResponse): void {
    const failure = this.failures.shift();
    const status = failure?.status ?? 200;
    res.writeHead(status, { "Content-Type": "text/plain", "X-Receiver": "console-e2e" });
    res.end(failure?.body ?? "ok");
    this.requests.push({ path, headers, body, status });
    this.waiters = this.waiters.filter((w) => {
      if (this.requests.length < w.count) return true;
      w.done();
      return false;
    });
  }

  stop(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((done) => this.server.close(() => done()));
  }
}
