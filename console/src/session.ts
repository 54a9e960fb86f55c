// The operator's API token: kept in sessionStorage (gone when the tab closes, never sent
// anywhere but this origin's API), read by the client middleware on every request.

const KEY = "wirehook.console.token";

type Listener = () => void;
const listeners = new Set<Listener>();
let notice: string | null = null;

function read(): string | null {
  try {
    return sessionStorage.getItem(KEY);
  } catch {
    // Storage disabled (privacy settings): the console still works for this page's lifetime.
    return memory;
  }
}
let memory: string | null = null;

function write(token: string | null): void {
  memory = token;
  try {
    if (token === null) sessionStorage.removeItem(KEY);
    else sessionStorage.setItem(KEY, token);
  } catch {
    /* see read() */
  }
}

function emit(): void {
  for (const l of listeners) l();
}

/** What the token says about itself (unverified: the API is the judge). */
export interface Claims {
  sub: string | undefined;
  exp: Date | undefined;
}

/** Reads a JWT's payload without verifying it, to show who is signed in and until when. */
export function claimsOf(token: string): Claims | null {
  const part = token.split(".")[1];
  if (part === undefined) return null;
  try {
    const json = atob(part.replace(/-/g, "+").replace(/_/g, "/"));
    const payload = JSON.parse(json) as { sub?: unknown; exp?: unknown };
    return {
      sub: typeof payload.sub === "string" ? payload.sub : undefined,
      exp: typeof payload.exp === "number" ? new Date(payload.exp * 1000) : undefined,
    };
  } catch {
    return null;
  }
}

export const session = {
  token: read,
  /** Why the operator was signed out (shown on the sign-in screen), if they did not choose to. */
  notice: (): string | null => notice,
  signIn(token: string): void {
    write(token);
    notice = null;
    emit();
  },
  signOut(why: string | null = null): void {
    write(null);
    notice = why;
    emit();
  },
  /** The API refused the stored token: back to sign-in with the reason. */
  expire(why: string): void {
    if (read() !== null) this.signOut(why);
  },
  subscribe(listener: Listener): () => void {
    listeners.add(listener);
    return () => listeners.delete(listener);
  },
};
