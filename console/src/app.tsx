// The shell: sign-in gate, navigation, and the screen for the current path.

import type { JSX } from "preact";
import { useEffect, useState } from "preact/hooks";
import { claimsOf, session } from "./session";
import { parseRoute, useLocation } from "./router";
import { SignIn } from "./screens/signin";
import { EventsScreen } from "./screens/events";
import { EventScreen } from "./screens/event";
import { ConfigsScreen } from "./screens/configs";
import { ConfigScreen } from "./screens/config";
import { NewConfigScreen } from "./screens/config-form";
import { Empty, Link } from "./ui";
import { fullTime } from "./format";

function useSession(): string | null {
  const [token, setToken] = useState(session.token());
  useEffect(() => session.subscribe(() => setToken(session.token())), []);
  return token;
}

export function App(): JSX.Element {
  const token = useSession();
  const loc = useLocation();
  const route = parseRoute(loc.path);

  useEffect(() => {
    const titles: Record<string, string> = {
      events: "Events",
      event: "Event",
      configs: "Configurations",
      configNew: "New configuration",
      config: "Configuration",
      notFound: "Not found",
    };
    document.title = `${token === null ? "Sign in" : titles[route.name]} · wirehook console`;
  }, [route.name, token]);

  if (token === null) return <SignIn />;
  const claims = claimsOf(token);
  const section = route.name === "event" || route.name === "events" ? "events" : route.name === "notFound" ? "" : "configs";

  let screen: JSX.Element;
  switch (route.name) {
    case "events":
      screen = <EventsScreen query={loc.query} />;
      break;
    case "event":
      screen = <EventScreen id={route.id} />;
      break;
    case "configs":
      screen = <ConfigsScreen />;
      break;
    case "configNew":
      screen = <NewConfigScreen />;
      break;
    case "config":
      screen = <ConfigScreen id={route.id} />;
      break;
    case "notFound":
      screen = (
        <Empty title="There is no such page in the console.">
          <Link to="/events">Go to the events</Link>
        </Empty>
      );
  }

  return (
    <>
      <a class="skip" href="#main">
        Skip to content
      </a>
      <header class="top">
        <Link to="/events" class="brand">
          <span class="logo" aria-hidden="true">
            ⟲
          </span>{" "}
          wirehook
        </Link>
        <nav aria-label="Main">
          <ul>
            <li>
              <Link to="/events" class={section === "events" ? "active" : ""}>
                Events
              </Link>
            </li>
            <li>
              <Link to="/configs" class={section === "configs" ? "active" : ""}>
                Configurations
              </Link>
            </li>
          </ul>
        </nav>
        <div class="who">
          {claims?.sub !== undefined ? (
            <span title={claims.exp !== undefined ? `Token expires ${fullTime(claims.exp.toISOString())}` : undefined}>
              {claims.sub}
            </span>
          ) : null}
          <button type="button" class="btn btn-ghost" onClick={() => session.signOut()}>
            Sign out
          </button>
        </div>
      </header>
      <main id="main" tabIndex={-1}>
        {screen}
      </main>
    </>
  );
}
