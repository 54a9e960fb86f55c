// Create and edit a configuration. Validation is the server's: the form sends what was typed
// and puts each error the API answers on the field it names, so the console never disagrees
// with the API about what is valid.

import type { JSX } from "preact";
import { useState } from "preact/hooks";
import {
  ApiFailure,
  type ConfigIn,
  type ConfigPatch,
  type EventType,
  type WebhookConfig,
  api,
  eventTypeValues,
  unwrap,
} from "../api/client";
import { navigate } from "../router";
import { CopyButton, ErrorBanner, Field, Link } from "../ui";

interface HeaderRow {
  key: number;
  name: string;
  value: string;
}

export interface FormState {
  name: string;
  url: string;
  eventTypes: EventType[];
  status: "active" | "inactive";
  secret: string;
  headers: HeaderRow[];
  maxAttempts: string;
  initialDelay: string;
  maxDelay: string;
  backoffFactor: string;
  campaigns: string;
  outcomes: string;
  agents: string;
  metadata: string;
}

let rowKey = 0;

export function emptyForm(): FormState {
  return {
    name: "",
    url: "",
    eventTypes: [],
    status: "active",
    secret: "",
    headers: [],
    maxAttempts: "",
    initialDelay: "",
    maxDelay: "",
    backoffFactor: "",
    campaigns: "",
    outcomes: "",
    agents: "",
    metadata: "",
  };
}

export function formOf(c: WebhookConfig): FormState {
  return {
    name: c.name,
    url: c.url,
    eventTypes: [...c.eventTypes],
    status: c.status === "inactive" ? "inactive" : "active",
    secret: "",
    headers: Object.entries(c.headers).map(([name, value]) => ({ key: ++rowKey, name, value })),
    maxAttempts: String(c.retryConfig.maxAttempts),
    initialDelay: String(c.retryConfig.initialDelay),
    maxDelay: String(c.retryConfig.maxDelay),
    backoffFactor: String(c.retryConfig.backoffFactor),
    campaigns: (c.filters.campaigns ?? []).join(", "),
    outcomes: (c.filters.outcomes ?? []).join(", "),
    agents: (c.filters.agents ?? []).join(", "),
    metadata: Object.keys(c.metadata).length === 0 ? "" : JSON.stringify(c.metadata, null, 2),
  };
}

/** Field keys the API's messages name (`url`, `retryConfig.maxDelay`, `filters.campaigns`, …). */
const FIELDS = new Set([
  "name",
  "url",
  "secret",
  "eventTypes",
  "status",
  "headers",
  "retryConfig",
  "retryConfig.maxAttempts",
  "retryConfig.initialDelay",
  "retryConfig.maxDelay",
  "retryConfig.backoffFactor",
  "filters",
  "filters.campaigns",
  "filters.outcomes",
  "filters.agents",
  "metadata",
]);
const GROUPS = new Set(["retryConfig", "filters"]);

/**
 * The form field an API validation message is about. The API names fields in backticks: as a
 * path in its own checks (`` `retryConfig.maxDelay` must be at least `initialDelay` ``), by the
 * innermost name in schema checks (`` field `maxAttempts` verification failed… ``), and custom
 * header messages say `` header `X-Name` ``. The first name that is a field wins.
 */
export function fieldOf(message: string): string | undefined {
  const tokens = [...message.matchAll(/`([^`]+)`/g)].map((m) => m[1] ?? "");
  let group: string | undefined;
  for (const t of tokens) {
    if (group !== undefined && FIELDS.has(`${group}.${t}`)) return `${group}.${t}`;
    if (GROUPS.has(t)) {
      group = t;
      continue;
    }
    if (FIELDS.has(t)) return t;
    const nested = [...FIELDS].filter((f) => f.endsWith(`.${t}`));
    if (nested.length === 1) return nested[0];
  }
  if (group !== undefined) return group;
  if (/\bheader\b/i.test(message)) return "headers";
  return undefined;
}

const CATEGORIES = [...new Set(eventTypeValues.map((t) => t.split(".")[0] ?? t))];

/** Splits "a, b\nc" into ["a", "b", "c"]; undefined when nothing was typed (matches all). */
function list(text: string): string[] | undefined {
  const values = text
    .split(/[,\n]/)
    .map((v) => v.trim())
    .filter((v) => v !== "");
  return values.length === 0 ? undefined : values;
}

class FormError extends Error {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(message);
  }
}

function number(text: string, field: string, label: string): number | undefined {
  if (text.trim() === "") return undefined;
  const n = Number(text);
  if (!Number.isFinite(n)) throw new FormError(field, `${label} must be a number`);
  return n;
}

/** The request body for the form's values (omitted values take the API's defaults). */
function bodyOf(f: FormState): ConfigPatch {
  const retry: NonNullable<ConfigPatch["retryConfig"]> = {};
  const maxAttempts = number(f.maxAttempts, "retryConfig.maxAttempts", "Attempts");
  if (maxAttempts !== undefined) retry.maxAttempts = maxAttempts;
  const initialDelay = number(f.initialDelay, "retryConfig.initialDelay", "First delay");
  if (initialDelay !== undefined) retry.initialDelay = initialDelay;
  const maxDelay = number(f.maxDelay, "retryConfig.maxDelay", "Longest delay");
  if (maxDelay !== undefined) retry.maxDelay = maxDelay;
  const backoffFactor = number(f.backoffFactor, "retryConfig.backoffFactor", "Backoff factor");
  if (backoffFactor !== undefined) retry.backoffFactor = backoffFactor;
  const filters: NonNullable<ConfigPatch["filters"]> = {};
  const campaigns = list(f.campaigns);
  if (campaigns !== undefined) filters.campaigns = campaigns;
  const outcomes = list(f.outcomes);
  if (outcomes !== undefined) filters.outcomes = outcomes;
  const agents = list(f.agents);
  if (agents !== undefined) filters.agents = agents;
  const headers: Record<string, string> = {};
  for (const h of f.headers) {
    if (h.name.trim() === "" && h.value === "") continue;
    headers[h.name.trim()] = h.value;
  }
  const body: ConfigPatch = {
    name: f.name,
    url: f.url,
    eventTypes: f.eventTypes,
    headers,
    retryConfig: retry,
    filters,
  };
  if (f.metadata.trim() !== "") {
    let metadata: unknown;
    try {
      metadata = JSON.parse(f.metadata);
    } catch (e) {
      throw new FormError("metadata", `Metadata is not valid JSON: ${(e as Error).message}`);
    }
    if (typeof metadata !== "object" || metadata === null || Array.isArray(metadata)) {
      throw new FormError("metadata", "Metadata must be a JSON object");
    }
    body.metadata = metadata as Record<string, unknown>;
  } else {
    body.metadata = {};
  }
  return body;
}

export function ConfigForm(props: {
  initial: FormState;
  /** Creating: shows status and secret, which editing changes through their own actions. */
  creating: boolean;
  submitLabel: string;
  onSubmit: (body: ConfigPatch, form: FormState) => Promise<void>;
}): JSX.Element {
  const [f, setF] = useState(props.initial);
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [failure, setFailure] = useState<ApiFailure | string | undefined>(undefined);
  const [busy, setBusy] = useState(false);
  const set = <K extends keyof FormState>(k: K, v: FormState[K]): void => setF((s) => ({ ...s, [k]: v }));

  const submit = async (e: Event): Promise<void> => {
    e.preventDefault();
    setErrors({});
    setFailure(undefined);
    let body: ConfigPatch;
    try {
      body = bodyOf(f);
    } catch (err) {
      if (err instanceof FormError) {
        setErrors({ [err.field]: err.message });
        setFailure("Fix the highlighted field.");
        return;
      }
      throw err;
    }
    setBusy(true);
    try {
      await props.onSubmit(body, f);
    } catch (err) {
      const failure = err instanceof ApiFailure ? err : new ApiFailure("client", 0, String(err));
      const field = failure.status === 400 ? fieldOf(failure.message) : undefined;
      if (field !== undefined) setErrors({ [field]: failure.message });
      setFailure(failure);
      // Bring the first invalid field into view for keyboard and screen reader users.
      window.requestAnimationFrame(() => {
        const el = document.querySelector<HTMLElement>("[aria-invalid='true']");
        el?.focus();
      });
    } finally {
      setBusy(false);
    }
  };

  const err = (k: string): string | undefined => errors[k];
  const toggleType = (t: EventType, on: boolean): void =>
    set(
      "eventTypes",
      on ? eventTypeValues.filter((x) => x === t || f.eventTypes.includes(x)) : f.eventTypes.filter((x) => x !== t),
    );

  return (
    <form class="config-form card" onSubmit={(e) => void submit(e)} noValidate aria-label={props.submitLabel}>
      <ErrorBanner error={failure} />
      <div class="grid-2">
        <Field id="cfg-name" label="Name" error={err("name")}>
          {(a) => <input {...a} name="name" value={f.name} onInput={(e) => set("name", e.currentTarget.value)} maxLength={255} />}
        </Field>
        <Field id="cfg-url" label="Endpoint URL" hint="Deliveries are POSTed here (http or https)." error={err("url")}>
          {(a) => (
            <input {...a} name="url" type="url" inputMode="url" placeholder="https://example.com/webhooks" value={f.url} onInput={(e) => set("url", e.currentTarget.value)} />
          )}
        </Field>
      </div>

      <fieldset class={`types${err("eventTypes") !== undefined ? " field-invalid" : ""}`} aria-describedby={err("eventTypes") !== undefined ? "cfg-types-error" : undefined}>
        <legend>Event types</legend>
        <div class="type-groups">
          {CATEGORIES.map((cat) => (
            <div class="type-group" key={cat}>
              <span class="type-cat">{cat}</span>
              {eventTypeValues
                .filter((t) => t.startsWith(`${cat}.`))
                .map((t) => (
                  <label class="check" key={t}>
                    <input type="checkbox" name="eventTypes" value={t} checked={f.eventTypes.includes(t)} onChange={(e) => toggleType(t, e.currentTarget.checked)} />
                    {t}
                  </label>
                ))}
            </div>
          ))}
        </div>
        {err("eventTypes") !== undefined ? (
          <p class="field-error" id="cfg-types-error" data-field-error="cfg-eventTypes">
            {err("eventTypes")}
          </p>
        ) : null}
      </fieldset>

      <fieldset class={err("filters") !== undefined ? "field-invalid" : ""}>
        <legend>Filters</legend>
        <p class="hint">Comma-separated values; leave a box empty to receive every event of the chosen types.</p>
        <div class="grid-3">
          <Field id="cfg-campaigns" label="Campaigns (campaignId)" error={err("filters.campaigns")}>
            {(a) => <input {...a} name="campaigns" value={f.campaigns} onInput={(e) => set("campaigns", e.currentTarget.value)} />}
          </Field>
          <Field id="cfg-outcomes" label="Outcomes (outcome)" error={err("filters.outcomes")}>
            {(a) => <input {...a} name="outcomes" value={f.outcomes} onInput={(e) => set("outcomes", e.currentTarget.value)} />}
          </Field>
          <Field id="cfg-agents" label="Agents (agentId)" error={err("filters.agents")}>
            {(a) => <input {...a} name="agents" value={f.agents} onInput={(e) => set("agents", e.currentTarget.value)} />}
          </Field>
        </div>
        {err("filters") !== undefined ? <p class="field-error">{err("filters")}</p> : null}
      </fieldset>

      <fieldset class={err("headers") !== undefined ? "field-invalid" : ""}>
        <legend>Custom headers</legend>
        {f.headers.length === 0 ? <p class="hint">None: deliveries carry only the signature and content headers.</p> : null}
        {f.headers.map((h, i) => (
          <div class="header-row" key={h.key}>
            <input
              aria-label={`Header ${i + 1} name`}
              name="headerName"
              placeholder="X-API-Key"
              value={h.name}
              aria-invalid={err("headers") !== undefined}
              onInput={(e) => set("headers", f.headers.map((x) => (x.key === h.key ? { ...x, name: e.currentTarget.value } : x)))}
            />
            <input
              aria-label={`Header ${i + 1} value`}
              name="headerValue"
              placeholder="value"
              value={h.value}
              onInput={(e) => set("headers", f.headers.map((x) => (x.key === h.key ? { ...x, value: e.currentTarget.value } : x)))}
            />
            <button type="button" class="btn btn-ghost" aria-label={`Remove header ${h.name || i + 1}`} onClick={() => set("headers", f.headers.filter((x) => x.key !== h.key))}>
              Remove
            </button>
          </div>
        ))}
        <button type="button" class="btn btn-small" onClick={() => set("headers", [...f.headers, { key: ++rowKey, name: "", value: "" }])}>
          Add header
        </button>
        {err("headers") !== undefined ? (
          <p class="field-error" data-field-error="cfg-headers">
            {err("headers")}
          </p>
        ) : null}
      </fieldset>

      <fieldset class={err("retryConfig") !== undefined ? "field-invalid" : ""}>
        <legend>Retry policy</legend>
        <p class="hint">Empty boxes keep the current value (new: 5 attempts, 30 s first delay, ×2, at most 3600 s).</p>
        <div class="grid-4">
          <Field id="cfg-maxAttempts" label="Attempts" error={err("retryConfig.maxAttempts")}>
            {(a) => <input {...a} name="maxAttempts" inputMode="numeric" value={f.maxAttempts} onInput={(e) => set("maxAttempts", e.currentTarget.value)} />}
          </Field>
          <Field id="cfg-initialDelay" label="First delay (s)" error={err("retryConfig.initialDelay")}>
            {(a) => <input {...a} name="initialDelay" inputMode="numeric" value={f.initialDelay} onInput={(e) => set("initialDelay", e.currentTarget.value)} />}
          </Field>
          <Field id="cfg-maxDelay" label="Longest delay (s)" error={err("retryConfig.maxDelay")}>
            {(a) => <input {...a} name="maxDelay" inputMode="numeric" value={f.maxDelay} onInput={(e) => set("maxDelay", e.currentTarget.value)} />}
          </Field>
          <Field id="cfg-backoffFactor" label="Backoff factor" error={err("retryConfig.backoffFactor")}>
            {(a) => <input {...a} name="backoffFactor" inputMode="decimal" value={f.backoffFactor} onInput={(e) => set("backoffFactor", e.currentTarget.value)} />}
          </Field>
        </div>
        {err("retryConfig") !== undefined ? <p class="field-error">{err("retryConfig")}</p> : null}
      </fieldset>

      {props.creating ? (
        <div class="grid-2">
          <Field id="cfg-status" label="Status" error={err("status")}>
            {(a) => (
              <select {...a} name="status" value={f.status} onChange={(e) => set("status", e.currentTarget.value === "inactive" ? "inactive" : "active")}>
                <option value="active">active: deliver at once</option>
                <option value="inactive">inactive: deliver nothing yet</option>
              </select>
            )}
          </Field>
          <Field id="cfg-secret" label="Signing secret (optional)" hint="Leave empty to have one generated (whsec_…)." error={err("secret")}>
            {(a) => <input {...a} name="secret" autoComplete="off" value={f.secret} onInput={(e) => set("secret", e.currentTarget.value)} />}
          </Field>
        </div>
      ) : null}

      <Field id="cfg-metadata" label="Metadata (JSON object, optional)" error={err("metadata")}>
        {(a) => <textarea {...a} name="metadata" rows={3} spellcheck={false} placeholder='{"owner": "sales-team"}' value={f.metadata} onInput={(e) => set("metadata", e.currentTarget.value)} />}
      </Field>

      <div class="actions">
        <button type="submit" class="btn btn-primary" disabled={busy}>
          {busy ? "Saving…" : props.submitLabel}
        </button>
      </div>
    </form>
  );
}

export function NewConfigScreen(): JSX.Element {
  const [created, setCreated] = useState<{ id: number; name: string; secret: string } | null>(null);
  if (created !== null) {
    return (
      <section aria-labelledby="created-title">
        <h1 id="created-title">Configuration created</h1>
        <div class="card secret-card">
          <p>
            <strong>{created.name}</strong> signs every delivery with this secret. Store it with the receiver now: it is
            shown this once.
          </p>
          <div class="secret">
            <code data-testid="new-secret">{created.secret}</code>
            <CopyButton text={created.secret} label="Copy secret" />
          </div>
          <button type="button" class="btn btn-primary" onClick={() => navigate(`/configs/${created.id}`, { replace: true })}>
            I stored it: open the configuration
          </button>
        </div>
      </section>
    );
  }
  return (
    <section aria-labelledby="new-title">
      <p class="crumbs">
        <Link to="/configs">Configurations</Link> /
      </p>
      <h1 id="new-title">New configuration</h1>
      <ConfigForm
        initial={emptyForm()}
        creating
        submitLabel="Create configuration"
        onSubmit={async (body, form) => {
          const create: ConfigIn = {
            name: body.name ?? "",
            url: body.url ?? "",
            eventTypes: body.eventTypes ?? [],
            status: form.status,
          };
          if (body.headers !== undefined) create.headers = body.headers;
          if (body.retryConfig !== undefined) create.retryConfig = body.retryConfig;
          if (body.filters !== undefined) create.filters = body.filters;
          if (body.metadata !== undefined) create.metadata = body.metadata;
          if (form.secret.trim() !== "") create.secret = form.secret.trim();
          const res = await unwrap(api.POST("/api/webhooks/config", { body: create }));
          setCreated({ id: res.webhook.id, name: res.webhook.name, secret: res.webhook.secret });
        }}
      />
    </section>
  );
}
