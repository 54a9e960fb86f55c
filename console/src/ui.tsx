// Building blocks shared by the screens: data loading, banners, badges, dialogs, JSON.

import type { ComponentChildren, JSX } from "preact";
import { useCallback, useEffect, useRef, useState } from "preact/hooks";
import { ApiFailure } from "./api/client";
import { href, onLinkClick } from "./router";
import { fullTime, relativeTime } from "./format";

export interface Loaded<T> {
  data: T | undefined;
  error: ApiFailure | undefined;
  /** True until the first answer (later reloads keep showing the previous data). */
  loading: boolean;
  /** True while any request is in flight. */
  busy: boolean;
  reload: () => void;
}

/** Loads `load()` when `key` changes; an answer that arrives after a newer request is ignored. */
export function useLoad<T>(load: () => Promise<T>, key: string): Loaded<T> {
  const [state, setState] = useState<{ data: T | undefined; error: ApiFailure | undefined; key: string | null }>({
    data: undefined,
    error: undefined,
    key: null,
  });
  const [busy, setBusy] = useState(true);
  const seq = useRef(0);
  const loadRef = useRef(load);
  loadRef.current = load;

  const run = useCallback(() => {
    const mine = ++seq.current;
    setBusy(true);
    loadRef.current().then(
      (data) => {
        if (mine !== seq.current) return;
        setState({ data, error: undefined, key });
        setBusy(false);
      },
      (e: unknown) => {
        if (mine !== seq.current) return;
        const error = e instanceof ApiFailure ? e : new ApiFailure("client", 0, String(e));
        setState((s) => ({ data: s.key === key ? s.data : undefined, error, key }));
        setBusy(false);
      },
    );
  }, [key]);

  useEffect(run, [run]);
  const fresh = state.key === key;
  return {
    data: fresh ? state.data : undefined,
    error: fresh ? state.error : undefined,
    loading: !fresh,
    busy,
    reload: run,
  };
}

/** Calls `tick` every `ms` while `on`, and stops when the page is hidden (a background tab). */
export function useInterval(tick: () => void, ms: number, on: boolean): void {
  const ref = useRef(tick);
  ref.current = tick;
  useEffect(() => {
    if (!on) return;
    const id = window.setInterval(() => {
      if (document.visibilityState === "visible") ref.current();
    }, ms);
    return () => window.clearInterval(id);
  }, [ms, on]);
}

export function Link(props: { to: string; class?: string; children: ComponentChildren; "aria-label"?: string }): JSX.Element {
  const { to, children, ...rest } = props;
  return (
    <a href={href(to)} onClick={(e) => onLinkClick(e, to)} {...rest}>
      {children}
    </a>
  );
}

export function ErrorBanner(props: { error: ApiFailure | string | undefined; children?: ComponentChildren }): JSX.Element | null {
  const { error } = props;
  if (error === undefined) return null;
  const message = typeof error === "string" ? error : error.message;
  const code = typeof error === "string" ? undefined : error.code;
  return (
    <div class="banner banner-error" role="alert">
      <strong>{message}</strong>
      {code !== undefined && code !== "client" ? <span class="code"> ({code})</span> : null}
      {props.children}
    </div>
  );
}

export function Notice(props: { children: ComponentChildren; tone?: "ok" | "info" }): JSX.Element {
  return (
    <div class={`banner banner-${props.tone ?? "info"}`} role="status">
      {props.children}
    </div>
  );
}

export function Loading(props: { what: string }): JSX.Element {
  return (
    <p class="loading" role="status" aria-busy="true">
      <span class="spinner" aria-hidden="true" /> Loading {props.what}…
    </p>
  );
}

export function Empty(props: { title: string; children?: ComponentChildren }): JSX.Element {
  return (
    <div class="empty">
      <p class="empty-title">{props.title}</p>
      {props.children}
    </div>
  );
}

/** A status as a coloured badge; the word is always shown (colour is never the only cue). */
export function Badge(props: { status: string }): JSX.Element {
  return <span class={`badge badge-${props.status}`}>{props.status}</span>;
}

export function Time(props: { at: string | undefined | null }): JSX.Element {
  if (props.at === undefined || props.at === null) return <span class="muted">—</span>;
  return (
    <time dateTime={props.at} title={`${fullTime(props.at)} (${relativeTime(props.at)})`}>
      {fullTime(props.at)}
    </time>
  );
}

export function JsonView(props: { value: unknown; label: string }): JSX.Element {
  return (
    <pre class="json" tabIndex={0} aria-label={props.label}>
      {JSON.stringify(props.value, null, 2)}
    </pre>
  );
}

/** A header map as a table; values are shown as stored (the API redacts signatures). */
export function HeadersTable(props: { headers: Record<string, string>; label: string }): JSX.Element {
  const entries = Object.entries(props.headers);
  if (entries.length === 0) return <p class="muted">No headers.</p>;
  return (
    <table class="kv" aria-label={props.label}>
      <tbody>
        {entries.map(([name, value]) => (
          <tr key={name}>
            <th scope="row">{name}</th>
            <td>{value}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

/** Copies `text`; falls back to selecting it where the Clipboard API is unavailable (plain http). */
export function CopyButton(props: { text: string; label?: string }): JSX.Element {
  const [state, setState] = useState<"idle" | "copied" | "failed">("idle");
  const copy = async (): Promise<void> => {
    try {
      await navigator.clipboard.writeText(props.text);
      setState("copied");
    } catch {
      setState("failed");
    }
  };
  return (
    <button type="button" class="btn btn-small" onClick={() => void copy()}>
      {state === "copied" ? "Copied" : state === "failed" ? "Copy failed: select and copy" : (props.label ?? "Copy")}
    </button>
  );
}

/** A modal dialog (native `<dialog>`: focus is trapped and Escape closes it). */
export function Dialog(props: {
  title: string;
  open: boolean;
  onClose: () => void;
  children: ComponentChildren;
}): JSX.Element {
  const ref = useRef<HTMLDialogElement>(null);
  useEffect(() => {
    const d = ref.current;
    if (d === null) return;
    if (props.open && !d.open) d.showModal();
    if (!props.open && d.open) d.close();
  }, [props.open]);
  return (
    <dialog ref={ref} class="dialog" aria-label={props.title} onClose={props.onClose}>
      {props.open ? (
        <>
          <header class="dialog-head">
            <h2>{props.title}</h2>
            <button type="button" class="btn btn-ghost" aria-label="Close dialog" onClick={props.onClose}>
              ×
            </button>
          </header>
          {props.children}
        </>
      ) : null}
    </dialog>
  );
}

/** A labelled form field with the server's (or the form's) message for it. */
export function Field(props: {
  id: string;
  label: string;
  hint?: string;
  error?: string | undefined;
  children: (attrs: { id: string; "aria-invalid": boolean; "aria-describedby": string | undefined }) => JSX.Element;
}): JSX.Element {
  const described = [props.hint !== undefined ? `${props.id}-hint` : null, props.error !== undefined ? `${props.id}-error` : null]
    .filter((x) => x !== null)
    .join(" ");
  return (
    <div class={`field${props.error !== undefined ? " field-invalid" : ""}`}>
      <label for={props.id}>{props.label}</label>
      {props.children({ id: props.id, "aria-invalid": props.error !== undefined, "aria-describedby": described || undefined })}
      {props.hint !== undefined ? (
        <p class="hint" id={`${props.id}-hint`}>
          {props.hint}
        </p>
      ) : null}
      {props.error !== undefined ? (
        <p class="field-error" id={`${props.id}-error`} data-field-error={props.id}>
          {props.error}
        </p>
      ) : null}
    </div>
  );
}
