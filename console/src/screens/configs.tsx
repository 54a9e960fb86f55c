// Configurations: every endpoint with its health at a glance (failing since, failed attempts,
// why the service disabled it).

import type { JSX } from "preact";
import { useState } from "preact/hooks";
import { api, unwrap } from "../api/client";
import { takeFlash } from "../flash";
import { Badge, Empty, ErrorBanner, Link, Loading, Notice, Time, useLoad } from "../ui";

export function ConfigsScreen(): JSX.Element {
  const configs = useLoad(() => unwrap(api.GET("/api/webhooks/config")), "configs");
  const [flash] = useState(takeFlash);
  return (
    <section aria-labelledby="configs-title">
      <div class="page-head">
        <h1 id="configs-title">Configurations</h1>
        <Link to="/configs/new" class="btn btn-primary">
          New configuration
        </Link>
      </div>
      {flash !== null ? <Notice tone="ok">{flash}</Notice> : null}
      <ErrorBanner error={configs.error}>
        {" "}
        <button type="button" class="btn btn-small" onClick={configs.reload}>
          Try again
        </button>
      </ErrorBanner>
      {configs.loading && configs.error === undefined ? <Loading what="configurations" /> : null}
      {configs.data !== undefined && configs.data.webhooks.length === 0 ? (
        <Empty title="No configurations yet.">
          <p>A configuration names an endpoint and the event types it receives; deliveries to it are signed and retried.</p>
          <Link to="/configs/new" class="btn btn-primary">
            Create the first one
          </Link>
        </Empty>
      ) : null}
      {configs.data !== undefined && configs.data.webhooks.length > 0 ? (
        <div class="table-wrap">
          <table class="list" aria-label="Configurations">
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Status</th>
                <th scope="col">Endpoint</th>
                <th scope="col">Event types</th>
                <th scope="col">Failing since</th>
                <th scope="col">Failed attempts</th>
                <th scope="col">Disabled reason</th>
              </tr>
            </thead>
            <tbody>
              {configs.data.webhooks.map((c) => (
                <tr key={c.id} data-config-id={c.id}>
                  <td>
                    <Link to={`/configs/${c.id}`}>{c.name}</Link>
                  </td>
                  <td>
                    <Badge status={c.status} />
                  </td>
                  <td class="url">{c.url}</td>
                  <td title={c.eventTypes.join(", ")}>
                    {c.eventTypes.length <= 2 ? c.eventTypes.join(", ") : `${c.eventTypes.slice(0, 2).join(", ")} +${c.eventTypes.length - 2}`}
                  </td>
                  <td>{c.failingSince !== undefined ? <Time at={c.failingSince} /> : <span class="muted">healthy</span>}</td>
                  <td class="num">{c.failedAttempts}</td>
                  <td>{c.disabledReason ?? <span class="muted">—</span>}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : null}
    </section>
  );
}
