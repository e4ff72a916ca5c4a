/**
 * A compile-only usage sample: `npm run typecheck` (tsc --noEmit --strict) proves that the
 * generated types and the wrapper work together. Nothing imports this file and it is not
 * published; it never runs.
 */
import { createParlorClient, isProblem } from "./index.js";
import type { AuthSession, ParlorClient, Problem, User } from "./index.js";

let accessToken: string | undefined;

const parlor: ParlorClient = createParlorClient({
  baseUrl: "https://parlor.example.com",
  getAccessToken: () => accessToken,
});

/** An async token source and a custom fetch are accepted too. */
export const withAsyncToken: ParlorClient = createParlorClient({
  baseUrl: "http://localhost:8080",
  getAccessToken: async () => Promise.resolve(accessToken),
  fetch: (request: Request) => fetch(request),
});

export async function register(): Promise<AuthSession> {
  const { data, error, response } = await parlor.POST("/v1/auth/register", {
    body: { email: "ann@example.com", password: "correct horse battery", display_name: "Ann" },
  });
  if (error) {
    // Every documented failure of register is a Problem: the type says so, no cast needed.
    const problem: Problem = error;
    if (problem.code === "conflict") {
      throw new Error(`email already registered (request ${problem.request_id ?? "?"})`);
    }
    for (const fieldError of problem.errors ?? []) {
      console.warn(fieldError.field ?? "(request)", fieldError.message);
    }
    throw new Error(`register failed with ${response.status}: ${problem.title}`);
  }
  const session: AuthSession = data;
  const tokenType: "Bearer" = session.token_type;
  accessToken = session.access_token;
  console.log(tokenType, session.expires_in, session.user.display_name);
  return session;
}

export async function login(email: string, password: string): Promise<AuthSession | Problem> {
  const { data, error } = await parlor.POST("/v1/auth/login", { body: { email, password } });
  if (error) {
    return error;
  }
  accessToken = data.access_token;
  return data;
}

export async function refresh(session: AuthSession): Promise<AuthSession> {
  const { data, error } = await parlor.POST("/v1/auth/refresh", {
    body: { refresh_token: session.refresh_token },
  });
  if (error) {
    if (error.code === "refresh_token_reused") {
      accessToken = undefined;
    }
    throw new Error(error.detail ?? error.title);
  }
  accessToken = data.access_token;
  return data;
}

export async function getMe(): Promise<User | undefined> {
  const { data, error, response } = await parlor.GET("/v1/me");
  if (error) {
    if (response.status === 401) {
      return undefined;
    }
    throw new Error(`${error.code}: ${error.title}`);
  }
  const id: string = data.id;
  const createdAt: Date = new Date(data.created_at);
  console.log(id, createdAt.toISOString());
  return data;
}

export async function logout(): Promise<void> {
  const { error } = await parlor.POST("/v1/auth/logout");
  if (error) {
    throw new Error(error.title);
  }
  accessToken = undefined;
}

export async function publicKeyIds(): Promise<string[]> {
  const { data } = await parlor.GET("/.well-known/jwks.json");
  return data?.keys.map((key) => key.kid) ?? [];
}

/** Narrowing something of unknown shape, e.g. a rejected promise's reason, to a Problem. */
export function describe(reason: unknown): string {
  if (isProblem(reason)) {
    const problem: Problem = reason;
    return `${problem.status} ${problem.code}`;
  }
  return reason instanceof Error ? reason.message : String(reason);
}

// Type-level checks: these lines fail to compile if the contract or the wrapper drift.
export async function mistakes(): Promise<void> {
  // @ts-expect-error display_name is required by RegisterRequest.
  await parlor.POST("/v1/auth/register", { body: { email: "a@b.c", password: "12345678" } });
  // @ts-expect-error password must be a string.
  await parlor.POST("/v1/auth/login", { body: { email: "a@b.c", password: 12345678 } });
  // @ts-expect-error there is no GET /v1/auth/login.
  await parlor.GET("/v1/auth/login");
}

// Realtime frames narrow on `type` under --strict.
import type { ServerFrame } from "./index.js";
import { CloseCode } from "./index.js";

export function handleFrame(frame: ServerFrame): string {
  switch (frame.type) {
    case "hello":
      return `${frame.connection_id} every ${frame.heartbeat_interval_ms} ms, resume from ${frame.token}`;
    case "event":
      return `${frame.event.type} #${frame.event.seq} in ${frame.event.room_id} (resume: ${frame.token})`;
    case "events": // only on a socket opened with batch=true
      return `${frame.events.length} events, the last #${frame.events[frame.events.length - 1]?.seq} (resume: ${frame.token})`;
    case "typing":
      return `${frame.user_id} typing=${String(frame.typing)}`;
    case "presence":
      return `${frame.user_id} online=${String(frame.online)}`;
    case "pong":
      return frame.id ?? "pong";
    case "error":
      return frame.code;
  }
}

export const shouldResume = (code: number): boolean =>
  code !== CloseCode.SessionEnded && code !== CloseCode.TooManyConnections && code !== CloseCode.FullSyncRequired;
