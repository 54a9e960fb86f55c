// One event: what was delivered (or received), every attempt with the receiver's answer, the
// signed request headers (signature redacted by the API), and Retry for a delivery that failed
// or was cancelled. It refreshes itself while a delivery is pending, so a retry is seen landing.

import type { JSX } from "preact";
import { useState } from "preact/hooks";
import { ApiFailure, type DeliveryAttempt, type WebhookEvent, api, unwrap } from "../api/client";
import { callIdOf, statusLine } from "../format";
import { Badge, CopyButton, Empty, ErrorBanner, HeadersTable, JsonView, Link, Loading, Notice, Time, useInterval, useLoad } from "../ui";

const PENDING_REFRESH_MS = 1500;

export function EventScreen(props: { id: number }): JSX.Element {
  const { id } = props;
  const details = useLoad(() => unwrap(api.GET("/api/webhooks/events/{id}", { params: { path: { id } } })), `event-${id}`);
  const [retryFailure, setRetryFailure] = useState<ApiFailure | undefined>(undefined);
  const [retried, setRetried] = useState(false);
  const [retrying, setRetrying] = useState(false);
  const pending = details.data?.event.status === "pending";
  useInterval(details.reload, PENDING_REFRESH_MS, pending);

  if (details.error?.status === 404) {
    return (
      <Empty title={`Event #${id} does not exist.`}>
        <p>It may have been purged by retention. <Link to="/events">Back to the events</Link></p>
      </Empty>
    );
  }
  if (details.data === undefined) {
    return details.error !== undefined ? <ErrorBanner error={details.error} /> : <Loading what={`event #${id}`} />;
  }
  const { event: e, webhookConfig: cfg, deliveryAttempts: attempts } = details.data;
  const canRetry = e.direction === "outbound" && (e.status === "failed" || e.status === "cancelled");
  const callId = callIdOf(e);

  const retry = async (): Promise<void> => {
    setRetrying(true);
    setRetryFailure(undefined);
    try {
      await unwrap(api.POST("/api/webhooks/events/{id}/retry", { params: { path: { id } } }));
      setRetried(true);
      details.reload();
    } catch (err) {
      setRetryFailure(err as ApiFailure);
    } finally {
      setRetrying(false);
    }
  };

  return (
    <section aria-labelledby="event-title">
      <p class="crumbs">
        <Link to="/events">Events</Link> /
      </p>
      <div class="page-head">
        <h1 id="event-title">
          {e.eventType} <span class="muted">#{e.id}</span> <Badge status={e.status} />
        </h1>
        {canRetry ? (
          <button type="button" class="btn btn-primary" disabled={retrying} onClick={() => void retry()}>
            {retrying ? "Queuing…" : "Retry delivery"}
          </button>
        ) : null}
      </div>
      {retried && pending ? <Notice>Retry queued; this page updates as the worker delivers it.</Notice> : null}
      {retried && e.status === "delivered" ? <Notice tone="ok">Delivered on retry.</Notice> : null}
      <ErrorBanner error={retryFailure} />
      {e.lastError !== undefined && e.status !== "delivered" ? (
        <div class="banner banner-error" data-testid="last-error">
          <strong>Last error:</strong> {e.lastError}
        </div>
      ) : null}

      <dl class="facts card" aria-label="Event">
        <div>
          <dt>Status</dt>
          <dd data-testid="event-status">
            <Badge status={e.status} />
            {pending && e.nextAttemptAt !== undefined ? (
              <span class="muted">
                {" "}
                next attempt <Time at={e.nextAttemptAt} />
              </span>
            ) : null}
          </dd>
        </div>
        <div>
          <dt>Direction</dt>
          <dd>
            {e.direction} · {e.source}
          </dd>
        </div>
        <div>
          <dt>Message id (webhook-id)</dt>
          <dd class="mono">
            {e.messageId} <CopyButton text={e.messageId} />
          </dd>
        </div>
        {callId !== undefined ? (
          <div>
            <dt>Call</dt>
            <dd>
              <Link to={`/events?callId=${encodeURIComponent(callId)}`}>{callId}</Link>
            </dd>
          </div>
        ) : null}
        {e.direction === "outbound" ? (
          <div>
            <dt>Attempts</dt>
            <dd>{e.attempts}</dd>
          </div>
        ) : null}
        {cfg !== undefined ? (
          <div>
            <dt>Configuration</dt>
            <dd>
              {cfg.deletedAt !== undefined ? (
                <>
                  {cfg.name} <span class="muted">(deleted <Time at={cfg.deletedAt} />)</span>
                </>
              ) : (
                <Link to={`/configs/${cfg.id}`}>{cfg.name}</Link>
              )}
              <div class="muted url">{cfg.url}</div>
            </dd>
          </div>
        ) : null}
        {e.parentEventId !== undefined ? (
          <div>
            <dt>From event</dt>
            <dd>
              <Link to={`/events/${e.parentEventId}`}>#{e.parentEventId}</Link>
            </dd>
          </div>
        ) : null}
        {e.clientIp !== undefined ? (
          <div>
            <dt>Client address</dt>
            <dd class="mono">{e.clientIp}</dd>
          </div>
        ) : null}
        <div>
          <dt>Created</dt>
          <dd>
            <Time at={e.createdAt} />
          </dd>
        </div>
        <div>
          <dt>Updated</dt>
          <dd>
            <Time at={e.updatedAt} />
          </dd>
        </div>
      </dl>

      <Payloads event={e} />

      {e.direction === "outbound" ? (
        <>
          <h2>Delivery attempts</h2>
          {attempts.length === 0 ? (
            <p class="muted">{pending ? "No attempt yet: the delivery is queued." : "No attempt was made."}</p>
          ) : (
            <ol class="attempts">
              {attempts.map((a) => (
                <Attempt key={`${a.attempt}-${a.createdAt}`} attempt={a} />
              ))}
            </ol>
          )}
        </>
      ) : null}
    </section>
  );
}

function Payloads(props: { event: WebhookEvent }): JSX.Element {
  const e = props.event;
  if (e.direction === "outbound") {
    return (
      <>
        <h2>Payload</h2>
        <p class="hint">
          Delivered as <code>data</code> in <code>{`{"type", "timestamp", "data"}`}</code>.
        </p>
        <JsonView value={e.payload} label="Payload" />
      </>
    );
  }
  if (e.status === "rejected") {
    return (
      <>
        <h2>Rejected request</h2>
        <JsonView value={e.payload} label="Rejected request" />
      </>
    );
  }
  return (
    <div class="grid-2 payloads">
      <div>
        <h2>{e.source === "11wire" ? "Published payload" : "Provider body"}</h2>
        <JsonView value={e.payload} label="Provider body" />
      </div>
      {e.normalizedPayload !== undefined ? (
        <div>
          <h2>Normalized payload</h2>
          <p class="hint">What deliveries of it carry as data.</p>
          <JsonView value={e.normalizedPayload} label="Normalized payload" />
        </div>
      ) : null}
    </div>
  );
}

function Attempt(props: { attempt: DeliveryAttempt }): JSX.Element {
  const a = props.attempt;
  const ok = a.statusCode !== undefined && a.statusCode >= 200 && a.statusCode < 300;
  return (
    <li class={`attempt card ${ok ? "attempt-ok" : "attempt-bad"}`} data-attempt={a.attempt}>
      <h3>
        Attempt {a.attempt}:{" "}
        <span data-testid="attempt-status">{a.statusCode !== undefined ? statusLine(a.statusCode) : "no response"}</span>
      </h3>
      <p class="attempt-meta">
        <Time at={a.createdAt} /> · {a.durationMs} ms
        {a.errorKind !== undefined ? (
          <>
            {" "}
            · <span class="error-kind">{a.errorKind}</span>
          </>
        ) : null}
      </p>
      {a.error !== undefined ? <p class="attempt-error">{a.error}</p> : null}
      <details>
        <summary>Request headers (signed; the signature is redacted)</summary>
        <HeadersTable headers={a.requestHeaders} label={`Request headers of attempt ${a.attempt}`} />
      </details>
      {a.responseHeaders !== undefined ? (
        <details>
          <summary>Response headers</summary>
          <HeadersTable headers={a.responseHeaders} label={`Response headers of attempt ${a.attempt}`} />
        </details>
      ) : null}
      {a.responseBody !== undefined ? (
        <>
          <h4>
            Response body{" "}
            {a.truncated ? (
              <span class="badge badge-truncated" title="The stored body was cut at 32 KiB">
                truncated at 32 KiB
              </span>
            ) : null}
          </h4>
          <pre class="json" tabIndex={0} aria-label={`Response body of attempt ${a.attempt}`} data-testid="response-body">
            {a.responseBody === "" ? "(empty)" : a.responseBody}
          </pre>
        </>
      ) : null}
    </li>
  );
}
