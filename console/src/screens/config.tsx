// One configuration: its health, the actions an operator takes on it (test, rotate the secret,
// recover failed deliveries, activate/deactivate, delete) and the edit form.

import type { JSX } from "preact";
import { useEffect, useState } from "preact/hooks";
import { ApiFailure, type EventType, type WebhookConfig, api, unwrap } from "../api/client";
import { flash } from "../flash";
import { fromLocalInput, plural, statusLine, toLocalInput } from "../format";
import { navigate } from "../router";
import { Badge, CopyButton, Dialog, Empty, ErrorBanner, Field, Link, Loading, Notice, Time, useLoad } from "../ui";
import { ConfigForm, formOf } from "./config-form";

type Action = "test" | "rotate" | "recover" | "delete" | null;

export function ConfigScreen(props: { id: number }): JSX.Element {
  const { id } = props;
  const config = useLoad(() => unwrap(api.GET("/api/webhooks/config/{id}", { params: { path: { id } } })), `config-${id}`);
  const [action, setAction] = useState<Action>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const [failure, setFailure] = useState<ApiFailure | undefined>(undefined);

  if (config.error?.status === 404) {
    return (
      <Empty title={`Configuration #${id} does not exist or was deleted.`}>
        <p>
          Its deliveries stay in the history: <Link to={`/events?webhookConfigId=${id}`}>events of configuration #{id}</Link>.
        </p>
      </Empty>
    );
  }
  if (config.data === undefined) {
    return config.error !== undefined ? <ErrorBanner error={config.error} /> : <Loading what="the configuration" />;
  }
  const c = config.data.webhook;

  const setStatus = async (status: "active" | "inactive"): Promise<void> => {
    setFailure(undefined);
    setNotice(null);
    try {
      await unwrap(api.PUT("/api/webhooks/config/{id}", { params: { path: { id } }, body: { status } }));
      setNotice(
        status === "active"
          ? "Activated: new events are delivered again. Use Recover to re-send what failed meanwhile."
          : "Deactivated: nothing is delivered and queued deliveries were cancelled.",
      );
      config.reload();
    } catch (e) {
      setFailure(e as ApiFailure);
    }
  };

  return (
    <section aria-labelledby="config-title">
      <p class="crumbs">
        <Link to="/configs">Configurations</Link> /
      </p>
      <div class="page-head">
        <h1 id="config-title">
          {c.name} <Badge status={c.status} />
        </h1>
        <Link to={`/events?webhookConfigId=${c.id}`}>Deliveries of this configuration →</Link>
      </div>
      <p class="url">{c.url}</p>

      <div class="toolbar" role="group" aria-label="Actions">
        <button type="button" class="btn" onClick={() => setAction("test")}>
          Send test event
        </button>
        <button type="button" class="btn" onClick={() => setAction("rotate")}>
          Rotate secret
        </button>
        <button type="button" class="btn" onClick={() => setAction("recover")}>
          Recover failed deliveries
        </button>
        {c.status === "active" ? (
          <button type="button" class="btn" onClick={() => void setStatus("inactive")}>
            Deactivate
          </button>
        ) : (
          <button type="button" class="btn" onClick={() => void setStatus("active")}>
            {c.status === "disabled" ? "Re-enable" : "Activate"}
          </button>
        )}
        <button type="button" class="btn btn-danger" onClick={() => setAction("delete")}>
          Delete
        </button>
      </div>
      {notice !== null ? <Notice tone="ok">{notice}</Notice> : null}
      <ErrorBanner error={failure} />

      <Health config={c} />

      <h2>Edit</h2>
      <ConfigForm
        // A saved change comes back with a new updatedAt: the form starts again from it.
        key={`${c.id}-${c.updatedAt}`}
        initial={formOf(c)}
        creating={false}
        submitLabel="Save changes"
        onSubmit={async (body) => {
          await unwrap(api.PUT("/api/webhooks/config/{id}", { params: { path: { id } }, body }));
          setNotice("Saved.");
          config.reload();
          window.scrollTo({ top: 0 });
        }}
      />

      <TestDialog config={c} open={action === "test"} onClose={() => setAction(null)} />
      <RotateDialog config={c} open={action === "rotate"} onClose={() => setAction(null)} onRotated={config.reload} />
      <RecoverDialog config={c} open={action === "recover"} onClose={() => setAction(null)} />
      <DeleteDialog config={c} open={action === "delete"} onClose={() => setAction(null)} />
    </section>
  );
}

function Health(props: { config: WebhookConfig }): JSX.Element {
  const c = props.config;
  return (
    <dl class="facts card" aria-label="Health">
      <div>
        <dt>Status</dt>
        <dd>
          <Badge status={c.status} />
        </dd>
      </div>
      <div>
        <dt>Failing since</dt>
        <dd>{c.failingSince !== undefined ? <Time at={c.failingSince} /> : "healthy (the last attempt succeeded or none failed)"}</dd>
      </div>
      <div>
        <dt>Failed attempts</dt>
        <dd>{c.failedAttempts}</dd>
      </div>
      {c.disabledReason !== undefined ? (
        <div>
          <dt>Disabled</dt>
          <dd>
            {c.disabledReason} (<Time at={c.disabledAt} />)
          </dd>
        </div>
      ) : null}
      <div>
        <dt>Retries</dt>
        <dd>
          {plural(c.retryConfig.maxAttempts, "attempt")}, first delay {c.retryConfig.initialDelay} s, ×{c.retryConfig.backoffFactor}, at most{" "}
          {c.retryConfig.maxDelay} s
        </dd>
      </div>
      {c.previousSecretExpiresAt !== undefined ? (
        <div>
          <dt>Previous secret</dt>
          <dd data-testid="previous-secret">
            still signs until <Time at={c.previousSecretExpiresAt} />
          </dd>
        </div>
      ) : null}
      <div>
        <dt>Created</dt>
        <dd>
          <Time at={c.createdAt} />
        </dd>
      </div>
      <div>
        <dt>Updated</dt>
        <dd>
          <Time at={c.updatedAt} />
        </dd>
      </div>
    </dl>
  );
}

function TestDialog(props: { config: WebhookConfig; open: boolean; onClose: () => void }): JSX.Element {
  const c = props.config;
  const [eventType, setEventType] = useState<EventType | undefined>(c.eventTypes[0]);
  const [payload, setPayload] = useState("");
  const [busy, setBusy] = useState(false);
  const [failure, setFailure] = useState<ApiFailure | string | undefined>(undefined);
  const [result, setResult] = useState<
    | { delivered: boolean; statusCode?: number; responseBody: string; responseTime: number; error?: string; eventId: number }
    | undefined
  >(undefined);

  const send = async (e: Event): Promise<void> => {
    e.preventDefault();
    setFailure(undefined);
    setResult(undefined);
    let testPayload: Record<string, unknown> | undefined;
    if (payload.trim() !== "") {
      try {
        const parsed: unknown = JSON.parse(payload);
        if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) throw new Error("not an object");
        testPayload = parsed as Record<string, unknown>;
      } catch {
        setFailure("The payload must be a JSON object, or empty for the sample payload.");
        return;
      }
    }
    if (eventType === undefined) return;
    setBusy(true);
    try {
      const body: { eventType: EventType; testPayload?: Record<string, unknown> } = { eventType };
      if (testPayload !== undefined) body.testPayload = testPayload;
      const res = await unwrap(api.POST("/api/webhooks/config/{id}/test", { params: { path: { id: c.id } }, body }));
      setResult(res.details);
    } catch (err) {
      setFailure(err as ApiFailure);
    } finally {
      setBusy(false);
    }
  };
  const close = (): void => {
    setResult(undefined);
    setFailure(undefined);
    props.onClose();
  };

  return (
    <Dialog title="Send a test event" open={props.open} onClose={close}>
      <form onSubmit={(e) => void send(e)} class="dialog-body">
        <p class="hint">Sends one signed delivery to {c.url} now and shows what the endpoint answered. It is recorded in the history.</p>
        <Field id="test-type" label="Event type">
          {(a) => (
            <select {...a} value={eventType} onChange={(e) => setEventType(c.eventTypes.find((t) => t === e.currentTarget.value))}>
              {c.eventTypes.map((t) => (
                <option key={t} value={t}>
                  {t}
                </option>
              ))}
            </select>
          )}
        </Field>
        <Field id="test-payload" label="Payload (JSON object, optional)" hint="Empty: a sample call payload.">
          {(a) => <textarea {...a} rows={4} spellcheck={false} value={payload} onInput={(e) => setPayload(e.currentTarget.value)} placeholder='{"callId": "test-call-123"}' />}
        </Field>
        <ErrorBanner error={failure} />
        {result !== undefined ? (
          <div class={`result ${result.delivered ? "result-ok" : "result-bad"}`} role="status" data-testid="test-result">
            <p>
              <strong>{result.delivered ? "Delivered" : "Not delivered"}</strong>
              {result.statusCode !== undefined ? `: ${statusLine(result.statusCode)}` : ""} in {result.responseTime} ms
            </p>
            {result.error !== undefined ? <p>{result.error}</p> : null}
            {result.responseBody !== "" ? <pre class="json">{result.responseBody}</pre> : null}
            <p>
              <Link to={`/events/${result.eventId}`}>Open event #{result.eventId}</Link>
            </p>
          </div>
        ) : null}
        <div class="actions">
          <button type="submit" class="btn btn-primary" disabled={busy || eventType === undefined}>
            {busy ? "Sending…" : "Send test"}
          </button>
          <button type="button" class="btn" onClick={close}>
            Close
          </button>
        </div>
      </form>
    </Dialog>
  );
}

const OVERLAPS: [number, string][] = [
  [0, "none: the old secret stops at once"],
  [3600, "1 hour"],
  [86400, "1 day"],
  [604800, "7 days"],
];

function RotateDialog(props: { config: WebhookConfig; open: boolean; onClose: () => void; onRotated: () => void }): JSX.Element {
  const [overlap, setOverlap] = useState(86400);
  const [secret, setSecret] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [failure, setFailure] = useState<ApiFailure | undefined>(undefined);
  const rotate = async (e: Event): Promise<void> => {
    e.preventDefault();
    setBusy(true);
    setFailure(undefined);
    try {
      const res = await unwrap(
        api.POST("/api/webhooks/config/{id}/rotate-secret", { params: { path: { id: props.config.id } }, body: { overlapSeconds: overlap } }),
      );
      setSecret(res.webhook.secret);
      props.onRotated();
    } catch (err) {
      setFailure(err as ApiFailure);
    } finally {
      setBusy(false);
    }
  };
  const close = (): void => {
    // The new secret is shown once: closing forgets it.
    setSecret(null);
    setFailure(undefined);
    props.onClose();
  };
  return (
    <Dialog title="Rotate the signing secret" open={props.open} onClose={close}>
      {secret === null ? (
        <form class="dialog-body" onSubmit={(e) => void rotate(e)}>
          <p>
            A new secret signs every delivery from now on. During the overlap each delivery carries both signatures, so the
            receiver can switch without losing one.
          </p>
          <Field id="rotate-overlap" label="Overlap (the old secret also signs)">
            {(a) => (
              <select {...a} value={overlap} onChange={(e) => setOverlap(Number(e.currentTarget.value))}>
                {OVERLAPS.map(([s, label]) => (
                  <option key={s} value={s}>
                    {label}
                  </option>
                ))}
              </select>
            )}
          </Field>
          <ErrorBanner error={failure} />
          <div class="actions">
            <button type="submit" class="btn btn-primary" disabled={busy}>
              {busy ? "Rotating…" : "Rotate secret"}
            </button>
            <button type="button" class="btn" onClick={close}>
              Cancel
            </button>
          </div>
        </form>
      ) : (
        <div class="dialog-body">
          <Notice tone="ok">The secret was rotated. Copy the new one to the receiver now: it is shown this once.</Notice>
          <div class="secret">
            <code data-testid="rotated-secret">{secret}</code>
            <CopyButton text={secret} label="Copy secret" />
          </div>
          <div class="actions">
            <button type="button" class="btn btn-primary" onClick={close}>
              Done
            </button>
          </div>
        </div>
      )}
    </Dialog>
  );
}

function RecoverDialog(props: { config: WebhookConfig; open: boolean; onClose: () => void }): JSX.Element {
  const c = props.config;
  const [since, setSince] = useState("");
  const [until, setUntil] = useState("");
  const [busy, setBusy] = useState(false);
  const [failure, setFailure] = useState<ApiFailure | string | undefined>(undefined);
  const [count, setCount] = useState<number | null>(null);
  // Each opening starts from the endpoint's current failing-since (or the last day).
  useEffect(() => {
    if (props.open) setSince(toLocalInput(c.failingSince ?? new Date(Date.now() - 86_400_000).toISOString()));
  }, [props.open]);
  const recover = async (e: Event): Promise<void> => {
    e.preventDefault();
    const sinceIso = fromLocalInput(since);
    if (sinceIso === undefined) {
      setFailure("Choose the start of the window.");
      return;
    }
    setBusy(true);
    setFailure(undefined);
    try {
      const body: { since: string; until?: string } = { since: sinceIso };
      const untilIso = fromLocalInput(until);
      if (untilIso !== undefined) body.until = untilIso;
      const res = await unwrap(api.POST("/api/webhooks/config/{id}/recover", { params: { path: { id: c.id } }, body }));
      setCount(res.count);
    } catch (err) {
      setFailure(err as ApiFailure);
    } finally {
      setBusy(false);
    }
  };
  const close = (): void => {
    setCount(null);
    setFailure(undefined);
    props.onClose();
  };
  return (
    <Dialog title="Recover failed deliveries" open={props.open} onClose={close}>
      <form class="dialog-body" onSubmit={(e) => void recover(e)}>
        <p>
          Queues again every <em>failed</em> delivery of this configuration created in the window, each with its original
          webhook-id and a fresh retry series. The configuration must be active.
        </p>
        <div class="grid-2">
          <Field id="recover-since" label="Since">
            {(a) => <input {...a} type="datetime-local" value={since} onInput={(e) => setSince(e.currentTarget.value)} />}
          </Field>
          <Field id="recover-until" label="Until (optional, default now)">
            {(a) => <input {...a} type="datetime-local" value={until} onInput={(e) => setUntil(e.currentTarget.value)} />}
          </Field>
        </div>
        <ErrorBanner error={failure} />
        {count !== null ? (
          <Notice tone="ok">
            {plural(count, "failed delivery", "failed deliveries")} queued again.{" "}
            {count > 0 ? <Link to={`/events?webhookConfigId=${c.id}&live=1`}>Watch them</Link> : null}
          </Notice>
        ) : null}
        <div class="actions">
          <button type="submit" class="btn btn-primary" disabled={busy}>
            {busy ? "Recovering…" : "Recover"}
          </button>
          <button type="button" class="btn" onClick={close}>
            Close
          </button>
        </div>
      </form>
    </Dialog>
  );
}

function DeleteDialog(props: { config: WebhookConfig; open: boolean; onClose: () => void }): JSX.Element {
  const c = props.config;
  const [busy, setBusy] = useState(false);
  const [failure, setFailure] = useState<ApiFailure | undefined>(undefined);
  const remove = async (): Promise<void> => {
    setBusy(true);
    setFailure(undefined);
    try {
      await unwrap(api.DELETE("/api/webhooks/config/{id}", { params: { path: { id: c.id } } }));
      flash(`Deleted “${c.name}”. Its deliveries stay in the history.`);
      navigate("/configs", { replace: true });
    } catch (err) {
      setFailure(err as ApiFailure);
      setBusy(false);
    }
  };
  return (
    <Dialog title="Delete this configuration?" open={props.open} onClose={props.onClose}>
      <div class="dialog-body">
        <p>
          <strong>{c.name}</strong> stops receiving events and its queued deliveries are cancelled. This cannot be undone.
          Its past deliveries stay in the history.
        </p>
        <ErrorBanner error={failure} />
        <div class="actions">
          <button type="button" class="btn btn-danger" disabled={busy} onClick={() => void remove()}>
            {busy ? "Deleting…" : `Delete ${c.name}`}
          </button>
          <button type="button" class="btn" onClick={props.onClose} autoFocus>
            Cancel
          </button>
        </div>
      </div>
    </Dialog>
  );
}
