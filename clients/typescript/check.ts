// Type-checked (`tsc --noEmit`), never run: calls every operation of openapi.json through
// openapi-fetch with the types openapi-typescript generated from it, and reads typed fields of
// every success response. A spec change that drops an operation, renames or retypes a field, or
// makes a parameter or body unusable fails to compile. scripts/client-check.sh generates
// ./generated/schema.ts and runs this; it also fails when an operation of the spec is not called
// here (so a new operation must be added below).
//
// Reads are written `const x: T = value.field`, so that a missing field, or one whose type is not
// assignable to T, is a compile error. Fields whose shape is known are read at that shape (a
// header map as Record<string, string>), so a spec that loses their type fails too.

import createClient, { type Client } from "openapi-fetch";
import type { components, paths } from "./generated/schema";

type Schemas = components["schemas"];
type ErrorBody = Schemas["ErrorBody"];
type EventType = Schemas["EventType"];

class ApiError extends Error {
  constructor(body: ErrorBody) {
    const code: string = body.error.code;
    const message: string = body.error.message;
    const success: boolean = body.success;
    super(`${code}: ${message} (success=${String(success)})`);
  }
}

// Every error response of the API is an ErrorBody: passing `error` here checks that for each
// operation.
function fail(error: ErrorBody): never {
  throw new ApiError(error);
}

// --- one reader per response schema ------------------------------------------------------------

function readRetryConfig(r: Schemas["RetryConfig"]): void {
  const maxAttempts: number = r.maxAttempts;
  const initialDelay: number = r.initialDelay;
  const maxDelay: number = r.maxDelay;
  const backoffFactor: number = r.backoffFactor;
  void [maxAttempts, initialDelay, maxDelay, backoffFactor];
}

function readFilters(f: Schemas["Filters"]): void {
  const campaigns: string[] | undefined = f.campaigns;
  const outcomes: string[] | undefined = f.outcomes;
  const agents: string[] | undefined = f.agents;
  void [campaigns, outcomes, agents];
}

function readConfig(c: Schemas["WebhookConfig"]): void {
  const id: number = c.id;
  const name: string = c.name;
  const url: string = c.url;
  const eventTypes: EventType[] = c.eventTypes;
  const status: "active" | "inactive" | "disabled" = c.status;
  const headers: Record<string, string> = c.headers;
  const header: string | undefined = headers["x-custom"];
  readRetryConfig(c.retryConfig);
  readFilters(c.filters);
  const metadata: Record<string, unknown> = c.metadata;
  const disabledReason: string | undefined = c.disabledReason;
  const disabledAt: string | undefined = c.disabledAt;
  const failingSince: string | undefined = c.failingSince;
  const failedAttempts: number = c.failedAttempts;
  const previousSecretExpiresAt: string | undefined = c.previousSecretExpiresAt;
  const createdAt: string = c.createdAt;
  const updatedAt: string = c.updatedAt;
  void [id, name, url, eventTypes, status, headers, header, metadata, disabledReason, disabledAt];
  void [failingSince, failedAttempts, previousSecretExpiresAt, createdAt, updatedAt];
}

function readConfigWithSecret(c: Schemas["WebhookConfigWithSecret"]): void {
  const secret: string = c.secret;
  void secret;
  // Everything a WebhookConfig has, with the same types.
  readConfig(c);
}

function readResponseData(r: Schemas["ResponseData"]): void {
  const statusCode: number | undefined = r.statusCode;
  const body: string = r.body;
  const headers: Record<string, string> = r.headers;
  const timing: number = r.timing;
  const truncated: boolean = r.truncated;
  const error: string | undefined = r.error;
  void [statusCode, body, headers, timing, truncated, error];
}

function readEvent(e: Schemas["WebhookEvent"]): void {
  const id: number = e.id;
  const messageId: string = e.messageId;
  const direction: "inbound" | "outbound" = e.direction;
  const source: "signalwire" | "elevenlabs" | "11wire" = e.source;
  // A string, not EventType: ignored inbound events keep the provider's own type name.
  const eventType: string = e.eventType;
  const status: Schemas["EventStatus"] = e.status;
  const pending: boolean = status === "pending";
  const payload: unknown = e.payload;
  const normalizedPayload: unknown = e.normalizedPayload;
  const attempts: number = e.attempts;
  const webhookConfigId: number | undefined = e.webhookConfigId;
  if (e.responseData !== undefined) readResponseData(e.responseData);
  const parentEventId: number | undefined = e.parentEventId;
  const nextAttemptAt: string | undefined = e.nextAttemptAt;
  const lastError: string | undefined = e.lastError;
  const clientIp: string | undefined = e.clientIp;
  const ordering: Schemas["EventOrdering"] | undefined = e.ordering;
  if (ordering !== undefined) {
    const key: string = ordering.key;
    const sequence: number = ordering.sequence;
    const previousId: string | undefined = ordering.previousId;
    const waiting: boolean = ordering.waiting;
    void [key, sequence, previousId, waiting];
  }
  const createdAt: string = e.createdAt;
  const updatedAt: string = e.updatedAt;
  void [id, messageId, direction, source, eventType, pending, payload, normalizedPayload, attempts];
  void webhookConfigId;
  void [parentEventId, nextAttemptAt, lastError, clientIp, createdAt, updatedAt];
}

function readAttempt(a: Schemas["DeliveryAttempt"]): void {
  const attempt: number = a.attempt;
  const statusCode: number | undefined = a.statusCode;
  const durationMs: number = a.durationMs;
  const errorKind: string | undefined = a.errorKind;
  const error: string | undefined = a.error;
  const requestHeaders: Record<string, string> = a.requestHeaders;
  const responseHeaders: Record<string, string> | undefined = a.responseHeaders;
  const responseBody: string | undefined = a.responseBody;
  const truncated: boolean = a.truncated;
  const createdAt: string = a.createdAt;
  void [attempt, statusCode, durationMs, errorKind, error, requestHeaders, responseHeaders];
  void [responseBody, truncated, createdAt];
}

function readInbound(r: Schemas["InboundResponse"]): void {
  const success: boolean = r.success;
  const message: string = r.message;
  const eventId: number = r.eventId;
  const status: Schemas["EventStatus"] = r.status;
  const duplicate: boolean = r.duplicate;
  const deliveries: number = r.deliveries;
  void [success, message, eventId, status, duplicate, deliveries];
}

// --- every operation ---------------------------------------------------------------------------

export async function checkConfigs(client: Client<paths>): Promise<number> {
  // configs.list
  {
    const { data, error } = await client.GET("/api/webhooks/config");
    if (error) fail(error);
    const success: boolean = data.success;
    const first: Schemas["WebhookConfig"] | undefined = data.webhooks[0];
    data.webhooks.forEach(readConfig);
    void [success, first];
  }

  // configs.create: every field of ConfigIn, typed
  const eventTypes: EventType[] = ["call.completed", "agent.error", "campaign.started"];
  const created = await client.POST("/api/webhooks/config", {
    body: {
      name: "client check",
      url: "https://example.test/hook",
      secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
      eventTypes,
      status: "active",
      headers: { "x-custom": "1" },
      retryConfig: { maxAttempts: 5, initialDelay: 30, maxDelay: 3600, backoffFactor: 2 },
      filters: { campaigns: ["c-1"], outcomes: ["completed"], agents: ["a-1"] },
      metadata: { team: "voice", priority: 1 },
    },
  });
  if (created.error) fail(created.error);
  const createdStatus: 201 = 201;
  const id: number = created.data.webhook.id;
  const createdMessage: string = created.data.message;
  const createdSuccess: boolean = created.data.success;
  readConfigWithSecret(created.data.webhook);
  void [createdStatus, createdMessage, createdSuccess];

  // configs.get
  {
    const { data, error } = await client.GET("/api/webhooks/config/{id}", {
      params: { path: { id } },
    });
    if (error) fail(error);
    const success: boolean = data.success;
    readConfig(data.webhook);
    void success;
  }

  // configs.update: a partial body
  {
    const { data, error } = await client.PUT("/api/webhooks/config/{id}", {
      params: { path: { id } },
      body: {
        name: "renamed",
        url: "https://example.test/other",
        secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        eventTypes: ["call.created"],
        status: "inactive",
        headers: {},
        retryConfig: { maxAttempts: 3 },
        filters: {},
        metadata: {},
      },
    });
    if (error) fail(error);
    const message: string = data.message;
    const success: boolean = data.success;
    readConfig(data.webhook);
    void [message, success];
  }
  {
    // An empty patch is a valid body too.
    const { error } = await client.PUT("/api/webhooks/config/{id}", {
      params: { path: { id } },
      body: {},
    });
    if (error) fail(error);
  }

  // configs.test
  {
    const { data, error } = await client.POST("/api/webhooks/config/{id}/test", {
      params: { path: { id } },
      body: { eventType: "call.completed", testPayload: { callId: "CA1", durationSec: 42 } },
    });
    if (error) fail(error);
    const success: boolean = data.success;
    const message: string = data.message;
    const d: Schemas["TestDetails"] = data.details;
    const delivered: boolean = d.delivered;
    const statusCode: number | undefined = d.statusCode;
    const responseBody: string = d.responseBody;
    const responseTime: number = d.responseTime;
    const testError: string | undefined = d.error;
    const eventId: number = d.eventId;
    const messageId: string = d.messageId;
    void [success, message, delivered, statusCode, responseBody, responseTime, testError];
    void [eventId, messageId];
  }

  // configs.rotateSecret
  {
    const { data, error } = await client.POST("/api/webhooks/config/{id}/rotate-secret", {
      params: { path: { id } },
      body: { secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", overlapSeconds: 3600 },
    });
    if (error) fail(error);
    const success: boolean = data.success;
    const message: string = data.message;
    const secret: string = data.webhook.secret;
    const expires: string | undefined = data.webhook.previousSecretExpiresAt;
    readConfigWithSecret(data.webhook);
    void [success, message, secret, expires];
  }
  {
    const { error } = await client.POST("/api/webhooks/config/{id}/rotate-secret", {
      params: { path: { id } },
      body: {},
    });
    if (error) fail(error);
  }

  // configs.recover
  {
    const { data, error, response } = await client.POST("/api/webhooks/config/{id}/recover", {
      params: { path: { id } },
      body: { since: "2026-01-01T00:00:00Z", until: "2026-01-02T00:00:00Z" },
    });
    if (error) fail(error);
    const httpStatus: number = response.status;
    const success: boolean = data.success;
    const message: string = data.message;
    const count: number = data.count;
    void [httpStatus, success, message, count];
  }

  // configs.delete
  {
    const { data, error } = await client.DELETE("/api/webhooks/config/{id}", {
      params: { path: { id } },
    });
    if (error) fail(error);
    const success: boolean = data.success;
    const message: string = data.message;
    void [success, message];
  }
  return id;
}

export async function checkEvents(client: Client<paths>, configId: number): Promise<void> {
  // events.publish
  const published = await client.POST("/api/webhooks/events", {
    body: {
      eventType: "call.completed",
      payload: { callId: "CA1", campaignId: "c-1", outcome: "completed", agentId: "a-1" },
      idempotencyKey: "client-check-1",
    },
  });
  if (published.error) fail(published.error);
  const duplicate: boolean = published.data.duplicate;
  const deliveries: number = published.data.deliveries;
  const publishedMessage: string = published.data.message;
  const publishedSuccess: boolean = published.data.success;
  readEvent(published.data.event);
  const eventId: number = published.data.event.id;
  void [duplicate, deliveries, publishedMessage, publishedSuccess];

  // events.list: every query parameter
  {
    const { data, error } = await client.GET("/api/webhooks/events", {
      params: {
        query: {
          page: 1,
          limit: 20,
          direction: "outbound",
          source: "11wire",
          eventType: "call.completed",
          status: "failed",
          fromDate: "2026-01-01",
          toDate: "2026-01-31T23:59:59Z",
          webhookConfigId: configId,
        },
      },
    });
    if (error) fail(error);
    const success: boolean = data.success;
    const count: number = data.count;
    const total: number = data.total;
    const page: number = data.page;
    const pages: number = data.pages;
    data.events.forEach(readEvent);
    void [success, count, total, page, pages];
  }
  {
    const { error } = await client.GET("/api/webhooks/events");
    if (error) fail(error);
  }

  // events.get
  {
    const { data, error } = await client.GET("/api/webhooks/events/{id}", {
      params: { path: { id: eventId } },
    });
    if (error) fail(error);
    const success: boolean = data.success;
    readEvent(data.event);
    const summary: Schemas["WebhookConfigSummary"] | undefined = data.webhookConfig;
    if (summary !== undefined) {
      const id: number = summary.id;
      const name: string = summary.name;
      const url: string = summary.url;
      void [id, name, url];
    }
    data.deliveryAttempts.forEach(readAttempt);
    void success;
  }

  // events.retry
  {
    const { data, error } = await client.POST("/api/webhooks/events/{id}/retry", {
      params: { path: { id: eventId } },
    });
    if (error) fail(error);
    const success: boolean = data.success;
    const message: string = data.message;
    readEvent(data.event);
    void [success, message];
  }

  // events.skip
  {
    const { data, error } = await client.POST("/api/webhooks/events/{id}/skip", {
      params: { path: { id: eventId } },
    });
    if (error) fail(error);
    const success: boolean = data.success;
    const message: string = data.message;
    readEvent(data.event);
    void [success, message];
  }
}

export async function checkInbound(client: Client<paths>): Promise<void> {
  // inbound.signalwire: a JSON call event...
  const callEvent = { event_type: "call.completed", call_id: "CA1", state: "completed" };
  {
    const { data, error } = await client.POST("/api/webhooks/signalwire", {
      params: { header: { "X-SignalWire-Signature": "0123abcd" } }, body: callEvent,
    });
    if (error) fail(error);
    readInbound(data);
  }
  // ... and a form-encoded cXML callback.
  {
    const form: Record<string, string> = { CallSid: "CA1", CallStatus: "completed" };
    const { data, error } = await client.POST("/api/webhooks/signalwire", {
      body: form,
      bodySerializer: (body) => new URLSearchParams(body as Record<string, string>),
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
    });
    if (error) fail(error);
    const duplicate: boolean = data.duplicate;
    void duplicate;
  }

  // inbound.elevenlabs
  const transcription = { type: "post_call_transcription", data: { conversation_id: "conv-1" } };
  {
    const { data, error } = await client.POST("/api/webhooks/elevenlabs", {
      params: { header: { "ElevenLabs-Signature": "t=1700000000,v0=0123abcd" } }, body: transcription,
    });
    if (error) fail(error);
    readInbound(data);
  }
}

export async function checkOps(client: Client<paths>): Promise<void> {
  // ops.health
  {
    const { data } = await client.GET("/healthz");
    if (data === undefined) throw new Error("no body");
    const status: string = data.status;
    void status;
  }
  // ops.ready: 503 carries a HealthStatus too
  {
    const { data, error } = await client.GET("/readyz");
    if (error) {
      const why: string = error.status;
      throw new Error(`not ready: ${why}`);
    }
    const status: string = data.status;
    void status;
  }
  // ops.metrics: Prometheus text
  {
    const { data } = await client.GET("/metrics", { parseAs: "text" });
    if (data === undefined) throw new Error("no body");
    const text: string = data;
    void text;
  }
}

export async function main(baseUrl: string, token: string): Promise<void> {
  const client = createClient<paths>({
    baseUrl,
    headers: { Authorization: `Bearer ${token}` },
  });
  const configId = await checkConfigs(client);
  await checkEvents(client, configId);
  await checkInbound(client);
  await checkOps(client);
}
