// The signed-in session: tokens, the typed API client, and keeping the access token fresh.
//
// Tokens live in sessionStorage: they survive a reload and the trip to the checkout page in
// the same tab, and are gone when the tab closes. Refresh tokens are single-use (presenting
// one twice signs the user out everywhere), so every refresh goes through one promise.
import { createParlorClient, type AuthSession, type ParlorClient, type Problem, type User } from "@parlor/client";

/** Every sessionStorage key of the demo starts with this. */
export const STORAGE_PREFIX = "parlor.demo.";
const STORAGE_KEY = `${STORAGE_PREFIX}session`;
/** Refresh the access token when it has less than this left. */
const REFRESH_MARGIN_MS = 60_000;

interface StoredSession {
  accessToken: string;
  refreshToken: string;
  /** When the access token expires, in ms since the epoch (by this browser's clock). */
  expiresAt: number;
  user: User;
}

export class Session {
  /** api makes authenticated calls: it refreshes the token before expiry and on a 401, once. */
  readonly api: ParlorClient;
  /** anon makes the calls that carry no access token: register, login, refresh. */
  private readonly anon: ParlorClient;
  private stored: StoredSession | undefined;
  private refreshing: Promise<boolean> | undefined;
  /** Called once when the session ends without the user asking (revoked, expired). */
  onEnded: (reason: string) => void = () => {};

  constructor(baseUrl: string) {
    this.anon = createParlorClient({ baseUrl });
    this.api = createParlorClient({
      baseUrl,
      getAccessToken: () => this.freshAccessToken(),
      fetch: (request) => this.fetchRetryingOn401(request),
    });
    this.stored = loadStored();
  }

  get user(): User | undefined {
    return this.stored?.user;
  }

  async register(email: string, password: string, displayName: string): Promise<Problem | undefined> {
    const { data, error } = await this.anon.POST("/v1/auth/register", {
      body: { email, password, display_name: displayName },
    });
    if (error) return error;
    this.save(data);
    return undefined;
  }

  async logIn(email: string, password: string): Promise<Problem | undefined> {
    const { data, error } = await this.anon.POST("/v1/auth/login", { body: { email, password } });
    if (error) return error;
    this.save(data);
    return undefined;
  }

  /** logOut revokes the session on the server (its sockets close with 4001) and forgets it. */
  async logOut(): Promise<void> {
    try {
      await this.api.POST("/v1/auth/logout");
    } finally {
      this.forget();
    }
  }

  /** refresh trades the refresh token for new tokens; concurrent callers share one exchange. */
  refresh(): Promise<boolean> {
    this.refreshing ??= this.exchangeRefreshToken().finally(() => {
      this.refreshing = undefined;
    });
    return this.refreshing;
  }

  private async exchangeRefreshToken(): Promise<boolean> {
    const current = this.stored;
    if (!current) return false;
    const { data, error } = await this.anon.POST("/v1/auth/refresh", {
      body: { refresh_token: current.refreshToken },
    });
    if (data) {
      this.save(data);
      return true;
    }
    if (error.status === 401) {
      // Expired, revoked, or reused (refresh_token_reused): only a new sign-in helps.
      this.end(error.detail ?? "Your session has ended. Please sign in again.");
    }
    return false;
  }

  private async freshAccessToken(): Promise<string | undefined> {
    if (this.stored && Date.now() > this.stored.expiresAt - REFRESH_MARGIN_MS) {
      await this.refresh();
    }
    return this.stored?.accessToken;
  }

  /**
   * fetchRetryingOn401 is the client's fetch: a 401 (the token expired early, say after the
   * laptop slept) gets one refresh and one retry with the new token.
   */
  private async fetchRetryingOn401(request: Request): Promise<Response> {
    const retry = request.clone(); // a request body can be read only once
    const response = await fetch(request);
    if (response.status !== 401 || !this.stored) return response;
    const sentToken = request.headers.get("Authorization");
    // Another call may have refreshed meanwhile; then just retry with its token.
    if (sentToken === `Bearer ${this.stored.accessToken}` && !(await this.refresh())) return response;
    if (!this.stored) return response;
    retry.headers.set("Authorization", `Bearer ${this.stored.accessToken}`);
    return fetch(retry);
  }

  /** end forgets the session and tells the app why (a 4001 close, a refused refresh). */
  end(reason: string): void {
    if (!this.stored) return;
    this.forget();
    this.onEnded(reason);
  }

  private save(s: AuthSession): void {
    this.stored = {
      accessToken: s.access_token,
      refreshToken: s.refresh_token,
      expiresAt: Date.now() + s.expires_in * 1000,
      user: s.user,
    };
    sessionStorage.setItem(STORAGE_KEY, JSON.stringify(this.stored));
  }

  /** forget drops the tokens and whatever else the demo remembered for this user. */
  private forget(): void {
    this.stored = undefined;
    for (const key of Object.keys(sessionStorage)) {
      if (key.startsWith(STORAGE_PREFIX)) sessionStorage.removeItem(key);
    }
  }
}

function loadStored(): StoredSession | undefined {
  const raw = sessionStorage.getItem(STORAGE_KEY);
  if (!raw) return undefined;
  try {
    const s = JSON.parse(raw) as Partial<StoredSession> | null;
    const ok = typeof s?.accessToken === "string" && typeof s.refreshToken === "string" &&
      typeof s.expiresAt === "number" && typeof s.user?.id === "string";
    return ok ? (s as StoredSession) : undefined;
  } catch {
    return undefined;
  }
}
