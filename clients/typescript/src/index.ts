/**
 * @parlor/client — a typed client for the Parlor API.
 *
 * The request and response types come from `./schema.js` (the `schema.d.ts` beside this file),
 * which openapi-typescript generates from `api/openapi.yaml`: run `npm run generate:ts` at the
 * repository root and never edit it by hand. This file only adds a thin wrapper around
 * openapi-fetch.
 */
import createClient from "openapi-fetch";
import type { Client, ClientOptions, Middleware } from "openapi-fetch";
import type { components, paths } from "./schema.js";

export type { components, operations, paths } from "./schema.js";
export type { Middleware } from "openapi-fetch";

/** Problem is an RFC 9457 `application/problem+json` error body; branch on `code`. */
export type Problem = components["schemas"]["Problem"];
/** FieldError is one invalid field of a request, inside `Problem.errors`. */
export type FieldError = components["schemas"]["FieldError"];
/** User is an account as the API shows it. */
export type User = components["schemas"]["User"];
/** AuthSession is what register, login and refresh return: tokens and their user. */
export type AuthSession = components["schemas"]["AuthSession"];
/** RegisterRequest is the body of `POST /v1/auth/register`. */
export type RegisterRequest = components["schemas"]["RegisterRequest"];
/** LoginRequest is the body of `POST /v1/auth/login`. */
export type LoginRequest = components["schemas"]["LoginRequest"];
/** RefreshRequest is the body of `POST /v1/auth/refresh`. */
export type RefreshRequest = components["schemas"]["RefreshRequest"];

/** Room, Message and RoomEvent are the chat resources; a sync page carries events. */
export type Room = components["schemas"]["Room"];
export type Message = components["schemas"]["Message"];
export type RoomEvent = components["schemas"]["RoomEvent"];
export type SyncPage = components["schemas"]["SyncPage"];

/**
 * ServerFrame is every WebSocket frame the server sends; narrow it on `type`
 * (`hello`, `event`, `events` — only on a socket opened with `batch=true` —, `typing`,
 * `presence`, `pong`, `error`). ClientFrame is every frame a client may send (`ping`,
 * `typing.start`, `typing.stop`).
 */
export type ServerFrame = components["schemas"]["ServerFrame"];
export type ClientFrame = components["schemas"]["ClientFrame"];
export type HelloFrame = components["schemas"]["HelloFrame"];
export type EventFrame = components["schemas"]["EventFrame"];
export type EventsFrame = components["schemas"]["EventsFrame"];
export type TypingFrame = components["schemas"]["TypingFrame"];
export type PresenceFrame = components["schemas"]["PresenceFrame"];

/**
 * Close codes of the realtime socket (see the contract's `realtime` tag). On any code but
 * SessionEnded, TooManyConnections and FullSyncRequired, reconnect with the last `token`.
 * On FullSyncRequired (the token cannot be used: an older format, or a database restore or
 * failover), start over from `GET /v1/sync` without `since`.
 */
export const CloseCode = {
  Normal: 1000,
  GoingAway: 1001,
  PolicyViolation: 1008,
  TooBig: 1009,
  ServerError: 1011,
  SessionEnded: 4001,
  HeartbeatMissed: 4002,
  SlowConsumer: 4008,
  TooManyConnections: 4009,
  RateLimited: 4029,
  FullSyncRequired: 4400,
  /** @deprecated the same code as FullSyncRequired, under its first name */
  InvalidToken: 4400,
} as const;

/** ParlorClient is an openapi-fetch client typed by the Parlor contract. */
export type ParlorClient = Client<paths>;

/** AccessTokenSource returns the current access token, or undefined when signed out. */
export type AccessTokenSource = () => string | undefined | Promise<string | undefined>;

/** ParlorClientOptions configures {@link createParlorClient}. */
export interface ParlorClientOptions {
  /**
   * The server's origin, e.g. `https://parlor.example.com`. Paths such as `/v1/me` are
   * appended to it. In a browser page served by Parlor itself, `window.location.origin`.
   */
  baseUrl: string;
  /**
   * Called before every request. When it returns a token, the request is sent with
   * `Authorization: Bearer <token>` (unless the call set its own `Authorization` header).
   */
  getAccessToken?: AccessTokenSource;
  /** A fetch implementation to use instead of `globalThis.fetch` (tests, proxies). */
  fetch?: ClientOptions["fetch"];
  /**
   * How a request is tried again when the server is briefly unable to answer it (see
   * {@link retrying}); `false` sends every request once. Retrying is on by default.
   */
  retry?: RetryOptions | false;
}

/** RetryOptions configures {@link retrying}. */
export interface RetryOptions {
  /** Attempts in all, the first included (default 3). */
  attempts?: number;
  /**
   * The longest `Retry-After` waited out, in seconds (default 10). A longer one (a room's
   * slow mode, a spent rate limit) is returned to the caller to show.
   */
  maxWaitSeconds?: number;
  /** Waits between attempts; tests may pass their own. */
  sleep?: (ms: number) => Promise<void>;
}

/**
 * isSafeToRepeat reports whether sending `request` twice has the effect of sending it once:
 * reads, `PUT` and `DELETE` by their nature; a `POST` or `PATCH` carrying an `Idempotency-Key`
 * (the server replays the first answer); a message send, whose `client_msg_id` returns the
 * original message; and a read marker, which only moves forward.
 */
export function isSafeToRepeat(request: Request): boolean {
  switch (request.method) {
    case "GET":
    case "HEAD":
    case "PUT":
    case "DELETE":
      return true;
  }
  if (request.headers.has("Idempotency-Key")) {
    return true;
  }
  const path = new URL(request.url).pathname;
  return request.method === "POST" && /^\/v1\/rooms\/[^/]+\/(messages|read)$/.test(path);
}

/**
 * retrying wraps a fetch so that a request {@link isSafeToRepeat safe to repeat} is sent
 * again, up to `attempts` times, when the server answers `503` (`unavailable`: a store it
 * needs is briefly unreachable, or it is not ready) or `429` (`rate_limited`), or the
 * connection fails before an answer. It waits the answer's `Retry-After`, or else a
 * backoff (0.3 s, 0.6 s, 1.2 s, … with jitter); a `Retry-After` over `maxWaitSeconds` is
 * returned at once. The last answer is returned, and the last network error thrown, as
 * they came.
 */
export function retrying(fetchImpl: (input: Request) => Promise<Response>, options: RetryOptions = {}): (input: Request) => Promise<Response> {
  const attempts = options.attempts ?? 3;
  const maxWaitSeconds = options.maxWaitSeconds ?? 10;
  const sleep = options.sleep ?? ((ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)));
  return async (request: Request): Promise<Response> => {
    if (!isSafeToRepeat(request)) {
      return fetchImpl(request);
    }
    for (let attempt = 1; ; attempt++) {
      let response: Response;
      try {
        // Each attempt sends a copy: a request's body can be read only once.
        response = await fetchImpl(attempt < attempts ? request.clone() : request);
      } catch (err) {
        if (attempt >= attempts || request.signal.aborted) {
          throw err;
        }
        await sleep(backoffMs(attempt));
        continue;
      }
      if ((response.status !== 503 && response.status !== 429) || attempt >= attempts) {
        return response;
      }
      const retryAfter = Number(response.headers.get("Retry-After"));
      if (retryAfter > maxWaitSeconds) {
        return response;
      }
      await response.body?.cancel();
      await sleep(retryAfter > 0 ? retryAfter * 1000 : backoffMs(attempt));
    }
  };
}

const backoffMs = (attempt: number): number => 300 * 2 ** (attempt - 1) * (0.5 + Math.random());

/**
 * bearerAuth returns openapi-fetch middleware that adds `Authorization: Bearer <token>` to
 * each request for which `getAccessToken` yields a token. A request that already carries an
 * `Authorization` header is left as it is.
 */
export function bearerAuth(getAccessToken: AccessTokenSource): Middleware {
  return {
    async onRequest({ request }) {
      if (request.headers.has("Authorization")) {
        return undefined;
      }
      const token = await getAccessToken();
      if (token) {
        request.headers.set("Authorization", `Bearer ${token}`);
      }
      return request;
    },
  };
}

/**
 * createParlorClient returns a typed client for the Parlor API.
 *
 * ```ts
 * const parlor = createParlorClient({ baseUrl: "https://parlor.example.com", getAccessToken: () => token });
 * const { data, error } = await parlor.GET("/v1/me");
 * ```
 *
 * Every call resolves to `{ data, response }` on success or `{ error, response }` otherwise;
 * the error of a documented failure is a {@link Problem}. Network failures reject. A request
 * that is safe to repeat is retried after a `503` or `429` (see {@link retrying}).
 */
export function createParlorClient(options: ParlorClientOptions): ParlorClient {
  const clientOptions: ClientOptions = { baseUrl: options.baseUrl };
  const fetchImpl = options.fetch ?? ((input: Request) => globalThis.fetch(input));
  clientOptions.fetch = options.retry === false ? fetchImpl : retrying(fetchImpl, options.retry);
  const client = createClient<paths>(clientOptions);
  if (options.getAccessToken !== undefined) {
    client.use(bearerAuth(options.getAccessToken));
  }
  return client;
}

/**
 * isProblem reports whether `x` looks like a Parlor problem body: an object with a string
 * `type`, `title` and `code` and a numeric `status`. Use it on values whose type the compiler
 * does not know, such as a caught exception or a body parsed by hand.
 */
export function isProblem(x: unknown): x is Problem {
  if (typeof x !== "object" || x === null) {
    return false;
  }
  const p = x as Record<string, unknown>;
  return (
    typeof p["type"] === "string" &&
    typeof p["title"] === "string" &&
    typeof p["status"] === "number" &&
    typeof p["code"] === "string"
  );
}
