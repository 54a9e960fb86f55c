// Event history: every filter of GET /api/webhooks/events, kept in the URL (a link shows the
// same view to a colleague, a reload keeps it), exact totals, paging, live refresh, and a quick
// search by call id for "we never got the call.completed for CA123".

import type { JSX } from "preact";
import { useEffect, useState } from "preact/hooks";
import {
  type EventQuery,
  type WebhookConfig,
  api,
  directionValues,
  eventStatusValues,
  eventTypeValues,
  sourceValues,
  unwrap,
} from "../api/client";
import { callIdOf, fromLocalInput, plural, toLocalInput } from "../format";
import { navigate } from "../router";
import { Badge, Empty, ErrorBanner, Link, Loading, Time, useInterval, useLoad } from "../ui";

const LIMITS = [20, 50, 100] as const;
const REFRESH_MS = 5000;

/** The query string's filters, typed; values the API would refuse are dropped. */
function toQuery(q: URLSearchParams): EventQuery {
  const out: EventQuery = {};
  const pick = <T extends string>(key: string, values: readonly T[]): T | undefined => {
    const v = q.get(key);
    return values.find((x) => x === v);
  };
  const direction = pick("direction", directionValues);
  if (direction !== undefined) out.direction = direction;
  const source = pick("source", sourceValues);
  if (source !== undefined) out.source = source;
  const status = pick("status", eventStatusValues);
  if (status !== undefined) out.status = status;
  const eventType = q.get("eventType");
  if (eventType) out.eventType = eventType;
  const config = q.get("webhookConfigId");
  if (config !== null && /^[1-9][0-9]{0,15}$/.test(config)) out.webhookConfigId = Number(config);
  const from = q.get("fromDate");
  if (from) out.fromDate = from;
  const to = q.get("toDate");
  if (to) out.toDate = to;
  const callId = q.get("callId")?.trim();
  if (callId) out.callId = callId;
  const page = Number(q.get("page") ?? "1");
  if (Number.isInteger(page) && page > 1) out.page = page;
  const limit = Number(q.get("limit") ?? "20");
  out.limit = LIMITS.find((l) => l === limit) ?? 20;
  return out;
}

const FILTERS = ["direction", "source", "eventType", "status", "webhookConfigId", "fromDate", "toDate", "callId"];

export function EventsScreen(props: { query: URLSearchParams }): JSX.Element {
  const query = toQuery(props.query);
  const live = props.query.get("live") === "1";
  const key = JSON.stringify(query);
  const events = useLoad(() => unwrap(api.GET("/api/webhooks/events", { params: { query } })), key);
  const configs = useLoad(() => unwrap(api.GET("/api/webhooks/config")), "configs");
  useInterval(events.reload, REFRESH_MS, live);

  /** Sets (or clears, with "") URL parameters; a filter change goes back to page 1. */
  const set = (changes: Record<string, string>): void => {
    const next = new URLSearchParams(props.query);
    for (const [k, v] of Object.entries(changes)) {
      if (v === "") next.delete(k);
      else next.set(k, v);
    }
    if (!("page" in changes)) next.delete("page");
    const qs = next.toString();
    navigate(`/events${qs ? `?${qs}` : ""}`);
  };
  const filtered = FILTERS.some((k) => props.query.has(k));
  const configById = new Map<number, WebhookConfig>((configs.data?.webhooks ?? []).map((c) => [c.id, c]));

  return (
    <section aria-labelledby="events-title">
      <div class="page-head">
        <h1 id="events-title">Events</h1>
        <label class="toggle">
          <input type="checkbox" checked={live} onChange={(e) => set({ live: e.currentTarget.checked ? "1" : "", page: props.query.get("page") ?? "" })} />
          Auto-refresh every {REFRESH_MS / 1000} s
        </label>
      </div>
      <CallSearch value={query.callId ?? ""} onSearch={(callId) => set({ callId })} />
      <form class="filters" aria-label="Filters" onSubmit={(e) => e.preventDefault()}>
        <Select label="Direction" name="direction" value={query.direction} options={directionValues} onChange={(v) => set({ direction: v })} />
        <Select label="Source" name="source" value={query.source} options={sourceValues} onChange={(v) => set({ source: v })} />
        <Select label="Event type" name="eventType" value={query.eventType} options={eventTypeValues} onChange={(v) => set({ eventType: v })} />
        <Select label="Status" name="status" value={query.status} options={eventStatusValues} onChange={(v) => set({ status: v })} />
        <div class="filter">
          <label for="f-config">Configuration</label>
          <select id="f-config" name="webhookConfigId" value={query.webhookConfigId ?? ""} onChange={(e) => set({ webhookConfigId: e.currentTarget.value })}>
            <option value="">Any</option>
            {(configs.data?.webhooks ?? []).map((c) => (
              <option key={c.id} value={c.id}>
                {c.name} (#{c.id})
              </option>
            ))}
            {query.webhookConfigId !== undefined && !configById.has(query.webhookConfigId) ? (
              <option value={query.webhookConfigId}>#{query.webhookConfigId} (deleted or unknown)</option>
            ) : null}
          </select>
        </div>
        <div class="filter">
          <label for="f-from">From</label>
          <input id="f-from" type="datetime-local" value={toLocalInput(query.fromDate)} onChange={(e) => set({ fromDate: fromLocalInput(e.currentTarget.value) ?? "" })} />
        </div>
        <div class="filter">
          <label for="f-to">To</label>
          <input id="f-to" type="datetime-local" value={toLocalInput(query.toDate)} onChange={(e) => set({ toDate: fromLocalInput(e.currentTarget.value) ?? "" })} />
        </div>
        {filtered ? (
          <button type="button" class="btn btn-ghost clear" onClick={() => set(Object.fromEntries(FILTERS.map((k) => [k, ""])))}>
            Clear filters
          </button>
        ) : null}
      </form>

      <ErrorBanner error={events.error}>
        {" "}
        <button type="button" class="btn btn-small" onClick={events.reload}>
          Try again
        </button>
      </ErrorBanner>
      {events.loading && events.error === undefined ? <Loading what="events" /> : null}
      {events.data !== undefined ? (
        events.data.total === 0 ? (
          filtered ? (
            <Empty title="No events match these filters.">
              <button type="button" class="btn" onClick={() => set(Object.fromEntries(FILTERS.map((k) => [k, ""])))}>
                Clear filters
              </button>
            </Empty>
          ) : (
            <Empty title="No events yet.">
              <p>
                Events appear here when a provider webhook arrives, a platform event is published, or you{" "}
                <Link to="/configs">send a test from a configuration</Link>.
              </p>
            </Empty>
          )
        ) : (
          <>
            <p class="summary" role="status" aria-live="polite" data-testid="events-summary">
              {summary(events.data.page, query.limit ?? 20, events.data.count, events.data.total)}
              {events.busy ? <span class="muted"> · refreshing…</span> : null}
            </p>
            <div class="table-wrap">
              <table class="list" aria-label="Events">
                <thead>
                  <tr>
                    <th scope="col">Created</th>
                    <th scope="col">Event</th>
                    <th scope="col">Status</th>
                    <th scope="col">Direction</th>
                    <th scope="col">Configuration</th>
                    <th scope="col">Attempts</th>
                    <th scope="col">Call</th>
                  </tr>
                </thead>
                <tbody>
                  {events.data.events.map((e) => {
                    const cfg = e.webhookConfigId !== undefined ? configById.get(e.webhookConfigId) : undefined;
                    return (
                      <tr key={e.id} data-event-id={e.id}>
                        <td>
                          <Time at={e.createdAt} />
                        </td>
                        <td>
                          <Link to={`/events/${e.id}`}>
                            {e.eventType} <span class="muted">#{e.id}</span>
                          </Link>
                        </td>
                        <td>
                          <Badge status={e.status} />
                        </td>
                        <td>
                          {e.direction} <span class="muted">· {e.source}</span>
                        </td>
                        <td>
                          {e.webhookConfigId === undefined ? (
                            <span class="muted">—</span>
                          ) : (
                            <Link to={`/configs/${e.webhookConfigId}`}>{cfg?.name ?? `#${e.webhookConfigId}`}</Link>
                          )}
                        </td>
                        <td class="num">{e.direction === "outbound" ? e.attempts : <span class="muted">—</span>}</td>
                        <td>{callIdOf(e) ?? <span class="muted">—</span>}</td>
                      </tr>
                    );
                  })}
                </tbody>
              </table>
            </div>
            <Pager
              page={events.data.page}
              pages={events.data.pages}
              limit={query.limit ?? 20}
              onPage={(p) => set({ page: p === 1 ? "" : String(p) })}
              onLimit={(l) => set({ limit: l === 20 ? "" : String(l) })}
            />
          </>
        )
      ) : null}
    </section>
  );
}

function summary(page: number, limit: number, count: number, total: number): string {
  if (count === 0) return `No events on page ${page} (${plural(total, "event")} in all)`;
  const first = (page - 1) * limit + 1;
  return `${first.toLocaleString()}–${(first + count - 1).toLocaleString()} of ${plural(total, "event")}`;
}

function CallSearch(props: { value: string; onSearch: (callId: string) => void }): JSX.Element {
  const [text, setText] = useState(props.value);
  useEffect(() => setText(props.value), [props.value]);
  return (
    <form
      class="call-search"
      role="search"
      onSubmit={(e) => {
        e.preventDefault();
        props.onSearch(text.trim());
      }}
    >
      <label for="call-id">Find a call</label>
      <input
        id="call-id"
        type="search"
        placeholder="Call id, e.g. CA123"
        value={text}
        onInput={(e) => setText(e.currentTarget.value)}
        aria-describedby="call-id-hint"
      />
      <button type="submit" class="btn">
        Search
      </button>
      <p class="hint" id="call-id-hint">
        Every event whose payload has this exact <code>callId</code>: the provider's webhook and each delivery of it.
      </p>
    </form>
  );
}

function Select<T extends string>(props: {
  label: string;
  name: string;
  value: string | undefined;
  options: readonly T[];
  onChange: (value: string) => void;
}): JSX.Element {
  const id = `f-${props.name}`;
  return (
    <div class="filter">
      <label for={id}>{props.label}</label>
      <select id={id} name={props.name} value={props.value ?? ""} onChange={(e) => props.onChange(e.currentTarget.value)}>
        <option value="">Any</option>
        {props.options.map((o) => (
          <option key={o} value={o}>
            {o}
          </option>
        ))}
      </select>
    </div>
  );
}

function Pager(props: { page: number; pages: number; limit: number; onPage: (p: number) => void; onLimit: (l: number) => void }): JSX.Element {
  const { page, pages } = props;
  return (
    <nav class="pager" aria-label="Pages">
      <button type="button" class="btn" disabled={page <= 1} onClick={() => props.onPage(page - 1)}>
        ← Newer
      </button>
      <span>
        Page {page.toLocaleString()} of {Math.max(pages, 1).toLocaleString()}
      </span>
      <button type="button" class="btn" disabled={page >= pages} onClick={() => props.onPage(page + 1)}>
        Older →
      </button>
      <label class="limit">
        Per page{" "}
        <select value={props.limit} onChange={(e) => props.onLimit(Number(e.currentTarget.value))}>
          {LIMITS.map((l) => (
            <option key={l} value={l}>
              {l}
            </option>
          ))}
        </select>
      </label>
    </nav>
  );
}
