// The realtime socket: one per signed-in page. It opens with a ticket, resumes from the token
// of the last frame it saw (nothing is missed, nothing arrives twice), and reconnects the way
// the contract's close-code table says (tag `realtime`).
import { CloseCode, type ClientFrame, type HelloFrame, type ParlorClient, type ServerFrame } from "@parlor/client";

export type RealtimeLimits = HelloFrame["limits"];

export interface RealtimeHandlers {
  /**
   * Every frame, in order; `event` frames are durable room events. The socket asks for
   * batches, and an `events` frame arrives here as one `event` frame per event.
   */
  frame(frame: ServerFrame): void;
  /** For the status line: "live", "connecting…", "reconnecting in 3 s", … */
  status(text: string, live: boolean): void;
  /** 4001: the session was logged out or revoked; sign in again. */
  sessionEnded(): void;
  /** 4400: the token can't be resumed; reload from `GET /v1/sync` and return its token. */
  startOver(): Promise<string>;
}

const BACKOFF_BASE_MS = 500;
const BACKOFF_MAX_MS = 30_000;
/** How long past a heartbeat interval we wait to hear anything before calling it dead. */
const SILENCE_GRACE_MS = 10_000;

export class Realtime {
  private ws: WebSocket | undefined;
  private failures = 0; // consecutive failed attempts, for the backoff
  private stopped = false;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  private heartbeatTimer: ReturnType<typeof setInterval> | undefined;
  private lastHeard = 0;
  limits: RealtimeLimits | undefined;

  /** token is where to resume from: a `GET /v1/sync` token, then each hello/event's token. */
  constructor(
    private readonly api: ParlorClient,
    private token: string,
    private readonly on: RealtimeHandlers,
  ) {
    window.addEventListener("online", this.reconnectNow);
  }

  start(): void {
    void this.connect();
  }

  stop(why = "offline"): void {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    clearInterval(this.heartbeatTimer);
    window.removeEventListener("online", this.reconnectNow);
    this.ws?.close(CloseCode.Normal, "bye");
    this.ws = undefined;
    this.on.status(why, false);
  }

  /** send writes a client frame; typing frames are not worth queueing while offline. */
  send(frame: ClientFrame): void {
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(frame));
  }

  private async connect(): Promise<void> {
    this.on.status(this.failures === 0 ? "connecting…" : "reconnecting…", false);
    let url: URL;
    try {
      // A ticket is single-use and lives 30 s: get a new one for every attempt.
      const { data, error } = await this.api.POST("/v1/realtime/tickets");
      if (this.stopped) return;
      if (error) {
        this.retry(backoff(this.failures++), error.detail ?? error.title);
        return;
      }
      url = new URL(data.url);
    } catch {
      this.retry(backoff(this.failures++), "network error");
      return;
    }
    // The ticket's url is built from APP_PUBLIC_URL. This page is served by Parlor itself,
    // so talk to the origin it came from: the gateway accepts its own origin and the page's
    // Content-Security-Policy allows connections to 'self'.
    url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    url.host = location.host;
    url.searchParams.set("since", this.token);
    // A burst of events (a busy room, a replay after a reconnect) arrives as one frame.
    url.searchParams.set("batch", "true");
    const ws = new WebSocket(url);
    this.ws = ws;
    ws.onmessage = (m: MessageEvent<unknown>) => this.receive(m.data);
    ws.onclose = (e) => {
      if (this.ws === ws) this.closed(e.code, e.reason);
    };
  }

  private receive(data: unknown): void {
    this.lastHeard = Date.now();
    const frame = parseFrame(data);
    if (!frame) return;
    switch (frame.type) {
      case "hello":
        this.failures = 0;
        this.limits = frame.limits;
        this.token = frame.token;
        this.startHeartbeat(frame.heartbeat_interval_ms);
        this.on.status("live", true);
        break;
      case "event":
        this.token = frame.token; // resume after this event next time
        break;
      case "events":
        this.token = frame.token; // resume after the last of them next time
        for (const event of frame.events) this.on.frame({ type: "event", token: frame.token, event });
        return;
      case "error":
        console.warn("realtime: a frame was refused:", frame.code, frame.message);
        break;
      default:
        break;
    }
    this.on.frame(frame);
  }

  /**
   * The server pings every heartbeat interval and the browser answers by itself. A silent
   * network (a sleeping laptop, a dead NAT entry) is not noticed by the browser, though: send
   * our own `ping` each interval and drop the socket when nothing comes back.
   */
  private startHeartbeat(intervalMs: number): void {
    clearInterval(this.heartbeatTimer);
    this.heartbeatTimer = setInterval(() => {
      if (Date.now() - this.lastHeard > intervalMs + SILENCE_GRACE_MS) {
        this.drop("the connection went silent");
        return;
      }
      this.send({ type: "ping" });
    }, intervalMs);
  }

  /** closed acts on a close code as the contract's table says. */
  private closed(code: number, reason: string): void {
    this.ws = undefined;
    clearInterval(this.heartbeatTimer);
    if (this.stopped) return;
    switch (code) {
      case CloseCode.SessionEnded:
        this.stop("signed out");
        this.on.sessionEnded();
        return;
      case CloseCode.TooManyConnections:
        this.stop("offline: too many open connections for this user; close another tab and reload");
        return;
      case CloseCode.FullSyncRequired:
        // The server cannot continue from our token (an older format, or the database was
        // restored or failed over): start over from a fresh sync.
        this.on
          .startOver()
          .then((token) => {
            this.token = token;
            this.retry(0, "starting over");
          })
          .catch(() => this.retry(backoff(this.failures++), "could not start over"));
        return;
      case CloseCode.GoingAway: // the server restarts: another instance takes us, soon
        this.retry(250 + Math.random() * 1000, reason || "server restarting");
        return;
      case CloseCode.RateLimited:
        this.retry(backoff(this.failures++, 1000), "too many frames");
        return;
      case CloseCode.PolicyViolation:
      case CloseCode.TooBig:
        console.error(`realtime: the server refused a frame of this client (${code} ${reason})`);
        this.retry(backoff(this.failures++), reason);
        return;
      default:
        // 1000 from the server, 1006 (network, or the upgrade was refused), 1011, 4002, 4008:
        // reconnect with our token after a backoff.
        this.retry(backoff(this.failures++), reason || `closed (${code})`);
    }
  }

  /** drop abandons a socket that stopped answering and reconnects. */
  private drop(why: string): void {
    const ws = this.ws;
    this.ws = undefined;
    clearInterval(this.heartbeatTimer);
    ws?.close();
    this.retry(backoff(this.failures++), why);
  }

  private retry(delayMs: number, why: string): void {
    if (this.stopped) return;
    clearTimeout(this.retryTimer);
    this.on.status(`reconnecting in ${Math.ceil(delayMs / 1000)} s (${why})`, false);
    this.retryTimer = setTimeout(() => void this.connect(), delayMs);
  }

  private readonly reconnectNow = (): void => {
    if (!this.stopped && !this.ws) {
      clearTimeout(this.retryTimer);
      void this.connect();
    }
  };
}

/** backoff is an exponential delay with full jitter: 0–0.5 s, 0–1 s, 0–2 s, … up to 30 s. */
function backoff(failures: number, minMs = 0): number {
  const cap = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** failures);
  return Math.max(minMs, Math.random() * cap);
}

/** parseFrame reads a server frame; the server speaks the contract, so the `type` is enough. */
function parseFrame(data: unknown): ServerFrame | undefined {
  if (typeof data !== "string") return undefined;
  try {
    const value: unknown = JSON.parse(data);
    if (typeof value === "object" && value !== null && "type" in value) return value as ServerFrame;
  } catch {
    // fall through
  }
  console.warn("realtime: ignoring a frame that is not JSON with a type");
  return undefined;
}
