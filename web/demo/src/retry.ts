// Retrying writes safely. A retry is only safe when the server can tell it from a new request:
// messages carry a client_msg_id, money-moving POSTs an Idempotency-Key. Callers choose that
// id once, before the first attempt, and every attempt below sends the same one.

const TRIES = 3;
/** A Retry-After longer than this is shown to the user rather than waited out. */
const MAX_WAIT_S = 5;

interface Answer {
  response: Response;
  error?: { code: string } | undefined;
}

/**
 * retrying runs `attempt` until the server gives an answer worth keeping: it tries again
 * (up to 3 times, waiting a short backoff or a Retry-After of at most 5 s) after a network error, a 5xx, a
 * 429, or a `409 idempotency_key_in_use` (the first attempt is still running).
 */
export async function retrying<T extends Answer>(attempt: () => Promise<T>): Promise<T> {
  for (let i = 1; ; i++) {
    let answer: T;
    try {
      answer = await attempt();
    } catch (err) {
      if (i >= TRIES) throw err; // fetch rejected: offline, or the connection dropped
      await sleep(backoffMs(i));
      continue;
    }
    const status = answer.response.status;
    const again = status >= 500 || status === 429 || answer.error?.code === "idempotency_key_in_use";
    if (!again || i >= TRIES) return answer;
    const retryAfter = Number(answer.response.headers.get("Retry-After"));
    if (retryAfter > MAX_WAIT_S) return answer; // e.g. slow mode: let the user see why
    await sleep(retryAfter > 0 ? retryAfter * 1000 : backoffMs(i));
  }
}

const backoffMs = (i: number): number => 300 * 2 ** i * (0.5 + Math.random());
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
