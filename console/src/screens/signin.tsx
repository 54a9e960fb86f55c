// Sign-in: paste a token (`api token --sub NAME`, or the one `just dev` prints). It is checked
// against the API before it is kept, so a wrong paste is told at once.

import type { JSX } from "preact";
import { useState } from "preact/hooks";
import { ApiFailure, api, unwrap } from "../api/client";
import { session } from "../session";
import { ErrorBanner, Notice } from "../ui";

export function SignIn(): JSX.Element {
  const [token, setToken] = useState("");
  const [error, setError] = useState<ApiFailure | string | undefined>(undefined);
  const [busy, setBusy] = useState(false);
  const notice = session.notice();

  const submit = async (e: Event): Promise<void> => {
    e.preventDefault();
    const candidate = token.trim().replace(/^Bearer\s+/i, "").replace(/^export TOKEN=/, "");
    if (candidate === "") {
      setError("Paste a token first.");
      return;
    }
    setBusy(true);
    setError(undefined);
    try {
      await unwrap(api.GET("/api/webhooks/config", { headers: { Authorization: `Bearer ${candidate}` } }));
      session.signIn(candidate);
    } catch (err) {
      setError(err instanceof ApiFailure && err.status === 401 ? new ApiFailure(err.code, 401, `The API refused this token: ${err.message}`) : (err as ApiFailure));
    } finally {
      setBusy(false);
    }
  };

  return (
    <main class="signin" id="main">
      <h1>
        <span class="logo" aria-hidden="true">
          ⟲
        </span>{" "}
        wirehook console
      </h1>
      {notice !== null ? <Notice>{notice}</Notice> : null}
      <form onSubmit={(e) => void submit(e)} class="card">
        <label for="token">API token</label>
        <textarea
          id="token"
          name="token"
          rows={4}
          autoComplete="off"
          spellcheck={false}
          placeholder="eyJhbGciOiJIUzI1NiIs…"
          value={token}
          onInput={(e) => setToken(e.currentTarget.value)}
          aria-describedby="token-hint"
          autoFocus
        />
        <p class="hint" id="token-hint">
          <code>just dev</code> prints one (<code>export TOKEN=…</code>); otherwise run{" "}
          <code>api token --sub your-name</code>. It is kept in this tab only (sessionStorage) and sent only to this
          API.
        </p>
        <ErrorBanner error={error} />
        <button type="submit" class="btn btn-primary" disabled={busy}>
          {busy ? "Checking…" : "Sign in"}
        </button>
      </form>
    </main>
  );
}
