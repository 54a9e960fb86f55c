// The console's only way to the API: an openapi-fetch client typed by ./schema.ts, which
// openapi-typescript generates from the committed openapi.json (`npm run gen`; the build fails
// when it differs). Auth is a middleware, so no screen handles tokens.

import createClient, { type Middleware } from "openapi-fetch";
import type { components, paths } from "./schema";
import { session } from "../session";

export type Schemas = components["schemas"];
export type WebhookConfig = Schemas["WebhookConfig"];
export type WebhookEvent = Schemas["WebhookEvent"];
export type DeliveryAttempt = Schemas["DeliveryAttempt"];
export type EventType = Schemas["EventType"];
export type EventStatus = Schemas["EventStatus"];
export type ConfigStatus = Schemas["ConfigStatus"];
export type ErrorBody = Schemas["ErrorBody"];
export type EventQuery = NonNullable<paths["/api/webhooks/events"]["get"]["parameters"]["query"]>;
export type ConfigIn = Schemas["ConfigIn"];
export type ConfigPatch = Schemas["ConfigPatch"];

export {
  directionValues,
  eventStatusValues,
  eventTypeValues,
  sourceValues,
} from "./schema";

const auth: Middleware = {
  onRequest({ request }) {
    const token = session.token();
    if (token !== null && !request.headers.has("Authorization")) {
      request.headers.set("Authorization", `Bearer ${token}`);
    }
    return request;
  },
  async onResponse({ request, response }) {
    // A refused stored token (expired, signed with another secret) sends the operator back to
    // sign-in; the sign-in check itself sends its candidate explicitly and handles its own 401.
    if (response.status === 401 && request.headers.get("Authorization") === `Bearer ${session.token() ?? ""}`) {
      const body = (await response.clone().json().catch(() => null)) as ErrorBody | null;
      session.expire(
        `The API refused the token${body?.error.message !== undefined ? `: ${body.error.message}` : ""}. Paste a new one.`,
      );
    }
    return response;
  },
};

export const api = createClient<paths>({ baseUrl: window.location.origin });
api.use(auth);

/** A failed call: the API's error code and message, or why the API could not be reached. */
export class ApiFailure extends Error {
  constructor(
    readonly code: string,
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = "ApiFailure";
  }
}

function isErrorBody(v: unknown): v is ErrorBody {
  if (typeof v !== "object" || v === null || !("error" in v)) return false;
  const e = (v as { error: unknown }).error;
  return typeof e === "object" && e !== null && "message" in e && "code" in e;
}

/** The data of a successful call, or an [`ApiFailure`] with the API's own message. */
export async function unwrap<D>(
  call: Promise<{ data?: D; error?: unknown; response: Response }>,
): Promise<D> {
  let result: { data?: D; error?: unknown; response: Response };
  try {
    result = await call;
  } catch (e) {
    const why = e instanceof Error ? e.message : String(e);
    throw new ApiFailure("unreachable", 0, `Cannot reach the API (${why}). Is the api running?`);
  }
  const { data, error, response } = result;
  if (response.ok && data !== undefined) return data;
  if (isErrorBody(error)) {
    throw new ApiFailure(error.error.code, response.status, error.error.message);
  }
  throw new ApiFailure(
    `http_${response.status}`,
    response.status,
    `The API answered ${response.status} ${response.statusText}`.trim(),
  );
}
