// A router for the handful of screens: real paths under /console/ (the api serves index.html
// for any of them), filters in the query string, so every view is a link that can be shared
// and survives a reload.

import { useEffect, useState } from "preact/hooks";

export const BASE = "/console";

export type Route =
  | { name: "events" }
  | { name: "event"; id: number }
  | { name: "configs" }
  | { name: "configNew" }
  | { name: "config"; id: number }
  | { name: "notFound" };

/** The route of an app path (without BASE). */
export function parseRoute(path: string): Route {
  const parts = path.split("/").filter((p) => p !== "");
  const id = (s: string | undefined): number | null =>
    s !== undefined && /^[1-9][0-9]{0,15}$/.test(s) ? Number(s) : null;
  const [head, second, ...rest] = parts;
  if (rest.length > 0) return { name: "notFound" };
  if (head === undefined) return { name: "events" };
  if (head === "events") {
    if (second === undefined) return { name: "events" };
    const n = id(second);
    return n === null ? { name: "notFound" } : { name: "event", id: n };
  }
  if (head === "configs") {
    if (second === undefined) return { name: "configs" };
    if (second === "new") return { name: "configNew" };
    const n = id(second);
    return n === null ? { name: "notFound" } : { name: "config", id: n };
  }
  return { name: "notFound" };
}

export interface Location {
  /** The app path, e.g. `/events/42`. */
  path: string;
  query: URLSearchParams;
}

function current(): Location {
  const p = window.location.pathname;
  const path = p.startsWith(BASE) ? p.slice(BASE.length) || "/" : p;
  return { path, query: new URLSearchParams(window.location.search) };
}

const CHANGE = "wirehook:navigate";

/** Goes to an app path (`/events?status=failed`); `replace` keeps the history entry. */
export function navigate(to: string, opts: { replace?: boolean } = {}): void {
  const url = BASE + to;
  if (url === window.location.pathname + window.location.search) return;
  if (opts.replace === true) window.history.replaceState(null, "", url);
  else window.history.pushState(null, "", url);
  window.dispatchEvent(new Event(CHANGE));
}

/** The current location; re-renders on navigation and on back/forward. */
export function useLocation(): Location {
  const [loc, setLoc] = useState(current);
  useEffect(() => {
    const update = (): void => setLoc(current());
    window.addEventListener("popstate", update);
    window.addEventListener(CHANGE, update);
    return () => {
      window.removeEventListener("popstate", update);
      window.removeEventListener(CHANGE, update);
    };
  }, []);
  return loc;
}

/** `href` for an app path. */
export function href(to: string): string {
  return BASE + to;
}

/** Follows a link inside the app without reloading, unless the user asked for a new tab. */
export function onLinkClick(e: MouseEvent, to: string): void {
  if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) {
    return;
  }
  e.preventDefault();
  navigate(to);
}
