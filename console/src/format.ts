// Formatting shared by the screens.

const pad = (n: number): string => String(n).padStart(2, "0");

/** `2026-12-07 14:03:12` in the browser's time zone: unambiguous and sortable at a glance. */
export function fullTime(iso: string): string {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function relativeTime(iso: string, now: number = Date.now()): string {
  const secs = Math.round((new Date(iso).getTime() - now) / 1000);
  const abs = Math.abs(secs);
  const [n, unit] =
    abs < 60 ? [secs, "second"] : abs < 3600 ? [Math.round(secs / 60), "minute"] : abs < 86400 ? [Math.round(secs / 3600), "hour"] : [Math.round(secs / 86400), "day"];
  return new Intl.RelativeTimeFormat(undefined, { numeric: "auto" }).format(n, unit as Intl.RelativeTimeFormatUnit);
}

/** An ISO instant as a `datetime-local` input value (local time, minutes). */
export function toLocalInput(iso: string | null | undefined): string {
  if (iso === null || iso === undefined || iso === "") return "";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** A `datetime-local` value (local time) as an ISO instant, or undefined when empty. */
export function fromLocalInput(value: string): string | undefined {
  if (value === "") return undefined;
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? undefined : d.toISOString();
}

/** The call an event is about, if its payload names one. */
export function callIdOf(e: { payload: unknown; normalizedPayload?: unknown }): string | undefined {
  for (const p of [e.normalizedPayload, e.payload]) {
    if (typeof p === "object" && p !== null && "callId" in p) {
      const id = (p as { callId: unknown }).callId;
      if (typeof id === "string") return id;
    }
  }
  return undefined;
}

const REASONS: Record<number, string> = {
  200: "OK",
  201: "Created",
  202: "Accepted",
  204: "No Content",
  301: "Moved Permanently",
  302: "Found",
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  408: "Request Timeout",
  410: "Gone",
  429: "Too Many Requests",
  500: "Internal Server Error",
  502: "Bad Gateway",
  503: "Service Unavailable",
  504: "Gateway Timeout",
};

export function statusLine(code: number): string {
  const reason = REASONS[code];
  return reason === undefined ? String(code) : `${code} ${reason}`;
}

export function plural(n: number, one: string, many = `${one}s`): string {
  return `${n.toLocaleString()} ${n === 1 ? one : many}`;
}
