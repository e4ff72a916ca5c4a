// The wallet: balance, credit packages, and buying credits through Checkout.
//
// Buying works like Stripe Checkout in any web app: create a top-up (with an Idempotency-Key),
// send the user to its checkout_url in this tab (in development, the sandbox's page with Pay
// and Cancel), and when they come back, poll GET /v1/wallet/topups/{id} until it settles. The
// credits arrive only once the provider confirms the payment, never on the redirect alone.
import type { components, ParlorClient } from "@parlor/client";
import { byId, h, randomKey, showProblem } from "./dom.js";
import { retrying } from "./retry.js";
import { STORAGE_PREFIX } from "./session.js";

type CreditPackage = components["schemas"]["CreditPackage"];
type Topup = components["schemas"]["Topup"];

/** Top-ups sent to checkout from this tab, so we can follow them when the user comes back. */
const PENDING_KEY = `${STORAGE_PREFIX}topups`;
const POLL_FAST_MS = 1000;
const POLL_SLOW_MS = 5000;
const POLL_FAST_FOR_MS = 60_000;

export class WalletPanel {
  private readonly balanceEl = byId("balance", HTMLElement);
  private readonly statusEl = byId("topup-status", HTMLElement);
  private readonly packagesEl = byId("packages", HTMLUListElement);
  private readonly watching = new Set<string>();
  private stopped = false;
  balance = 0;

  constructor(private readonly api: ParlorClient) {}

  async load(): Promise<void> {
    await Promise.all([this.refresh(), this.loadPackages()]);
    // Back from checkout: Stripe's success and cancel URLs carry ?topup=ID; the sandbox's
    // "Back to Parlor" link does not, so we also remember the ids we sent off.
    const params = new URLSearchParams(location.search);
    const fromUrl = params.get("topup");
    if (fromUrl) {
      rememberTopup(fromUrl);
      history.replaceState(null, "", location.pathname + location.hash);
    }
    for (const id of pendingTopups()) void this.watch(id);
  }

  stop(): void {
    this.stopped = true;
  }

  /** refresh re-reads the balance (after a tip, a paid join, a settled top-up). */
  async refresh(): Promise<void> {
    const { data, error } = await this.api.GET("/v1/wallet");
    if (error) return showProblem(error);
    this.balance = data.balance;
    this.balanceEl.textContent = data.debt > 0 ? `${data.balance} (owes ${data.debt})` : String(data.balance);
  }

  private async loadPackages(): Promise<void> {
    const { data, error } = await this.api.GET("/v1/wallet/packages");
    if (error) return showProblem(error);
    this.packagesEl.replaceChildren(
      ...data.items.map((p) =>
        h("li", {}, h("button", { type: "button", onclick: () => void this.buy(p) }, `Buy ${p.credits} credits`), ` for ${price(p)}`),
      ),
    );
  }

  private async buy(p: CreditPackage): Promise<void> {
    const key = randomKey(); // one purchase = one key, however often the request is retried
    const { data, error } = await retrying(() =>
      this.api.POST("/v1/wallet/topups", {
        params: { header: { "Idempotency-Key": key } },
        body: { package_id: p.id },
      }),
    );
    if (error) return showProblem(error);
    rememberTopup(data.id);
    location.assign(data.checkout_url);
  }

  /** watch polls a top-up until it settles; the GET asks the provider while it is pending. */
  private async watch(id: string): Promise<void> {
    if (this.watching.has(id)) return;
    this.watching.add(id);
    const started = Date.now();
    try {
      for (;;) {
        const { data, error } = await this.api.GET("/v1/wallet/topups/{topup_id}", { params: { path: { topup_id: id } } });
        if (this.stopped) return;
        if (error) {
          if (error.status === 404) forgetTopup(id); // not this user's, or a stale id
          return showProblem(error);
        }
        if (data.status !== "pending" || Date.parse(data.expires_at) < Date.now()) {
          this.settled(data);
          return;
        }
        this.statusEl.textContent = `Waiting for the payment of ${data.credits} credits…`;
        await new Promise((r) => setTimeout(r, Date.now() - started < POLL_FAST_FOR_MS ? POLL_FAST_MS : POLL_SLOW_MS));
      }
    } finally {
      this.watching.delete(id);
    }
  }

  private settled(t: Topup): void {
    forgetTopup(t.id);
    const outcome: Record<Topup["status"], string> = {
      pending: `The checkout for ${t.credits} credits closed unpaid.`,
      succeeded: `${t.credits} credits added.`,
      expired: `The checkout for ${t.credits} credits was cancelled or expired.`,
      failed: `The payment for ${t.credits} credits failed.`,
      refunded: `The top-up of ${t.credits} credits was refunded.`,
      review: `The payment for ${t.credits} credits did not match the price; it is being reviewed and nothing was credited yet.`,
      partially_refunded: `Part of the payment for ${t.credits} credits was refunded; that share of the credits was taken back.`,
      disputed: `The payment for ${t.credits} credits is disputed; its credits are held until the dispute ends.`,
      charged_back: `The payment for ${t.credits} credits was charged back; its credits were taken back.`,
    };
    this.statusEl.textContent = outcome[t.status];
    void this.refresh();
  }
}

function price(p: CreditPackage): string {
  const format = new Intl.NumberFormat(undefined, { style: "currency", currency: p.currency.toUpperCase() });
  const digits = format.resolvedOptions().maximumFractionDigits ?? 2; // minor units: cents, or none for JPY
  return format.format(p.price / 10 ** digits);
}

function pendingTopups(): string[] {
  try {
    const ids: unknown = JSON.parse(sessionStorage.getItem(PENDING_KEY) ?? "[]");
    return Array.isArray(ids) ? ids.filter((x): x is string => typeof x === "string") : [];
  } catch {
    return [];
  }
}

function rememberTopup(id: string): void {
  const ids = pendingTopups().filter((x) => x !== id);
  sessionStorage.setItem(PENDING_KEY, JSON.stringify([...ids, id].slice(-10)));
}

function forgetTopup(id: string): void {
  sessionStorage.setItem(PENDING_KEY, JSON.stringify(pendingTopups().filter((x) => x !== id)));
}
