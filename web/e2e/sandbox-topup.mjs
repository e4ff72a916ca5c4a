// Browser end-to-end test of the sandbox top-up: create a top-up through the REST API, open
// its checkout_url in headless Chromium, press Pay, and wait for the credits to reach the
// wallet through the real path (signed webhook → stored event → job → ledger posting).
//
// Run by cmd/parlor/browser_test.go (part of `go tool task test`) against a fresh
// `parlor serve`; by hand:
//
//   PARLOR_BASE_URL=http://127.0.0.1:8080 PARLOR_ACCESS_TOKEN=… node web/e2e/sandbox-topup.mjs
//
// Environment:
//   PARLOR_BASE_URL      the server, on a local host only (required)
//   PARLOR_ACCESS_TOKEN  a user's access token; or PARLOR_EMAIL + PARLOR_PASSWORD to log in
//   PARLOR_PACKAGE       the credit package to buy (default: small)
//   PARLOR_WAIT_MS       how long the credits may take to arrive (default: 15000)
//   CHROMIUM_PATH        the browser (default: /usr/bin/chromium, Debian's `chromium`)
//
// Exits 0 when the wallet holds exactly the package's credits more than before; otherwise
// prints what went wrong, saves a screenshot and the page's HTML to a temporary directory,
// and exits 1. Nothing may leave the machine: the browser's requests to any host but the
// server's are aborted and fail the run, and Chromium's own background traffic is turned off.
import { randomUUID } from 'node:crypto';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { isLocal, launchLocalChromium, newLocalContext } from './local-chromium.mjs';

const baseURL = process.env.PARLOR_BASE_URL ?? '';
const packageId = process.env.PARLOR_PACKAGE || 'small';
const waitMs = Number(process.env.PARLOR_WAIT_MS || 15000);

const started = Date.now();
const log = (msg) => console.log(`[sandbox-topup +${((Date.now() - started) / 1000).toFixed(2)}s] ${msg}`);

class Failure extends Error {}
const fail = (msg) => {
  throw new Failure(msg);
};

// api calls the server's REST API (never another host) and returns [status, parsed body].
async function api(method, path, { token, body, headers = {} } = {}) {
  const url = new URL(path, baseURL);
  if (!isLocal(url.href) || url.origin !== new URL(baseURL).origin) fail(`refusing a request to ${url.href}`);
  const res = await fetch(url, {
    method,
    headers: {
      accept: 'application/json',
      ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...headers,
    },
    body: body !== undefined ? JSON.stringify(body) : undefined,
    redirect: 'manual',
    signal: AbortSignal.timeout(10_000),
  });
  const text = await res.text();
  let json;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = undefined;
  }
  return [res.status, json, text];
}

async function expectStatus(want, method, path, opts) {
  const [status, json, text] = await api(method, path, opts);
  if (status !== want) fail(`${method} ${path} answered ${status}, want ${want}: ${text}`);
  return json;
}

async function accessToken() {
  if (process.env.PARLOR_ACCESS_TOKEN) return process.env.PARLOR_ACCESS_TOKEN;
  const { PARLOR_EMAIL: email, PARLOR_PASSWORD: password } = process.env;
  if (!email || !password) fail('set PARLOR_ACCESS_TOKEN, or PARLOR_EMAIL and PARLOR_PASSWORD');
  const tokens = await expectStatus(200, 'POST', '/v1/auth/login', { body: { email, password } });
  return tokens.access_token;
}

async function wallet(token) {
  return expectStatus(200, 'GET', '/v1/wallet', { token });
}

async function main() {
  if (!baseURL) fail('PARLOR_BASE_URL is not set (e.g. http://127.0.0.1:8080)');
  if (!isLocal(baseURL)) fail(`PARLOR_BASE_URL must be on a local host (127.0.0.1, localhost, [::1]), not ${baseURL}`);

  const token = await accessToken();
  const before = await wallet(token);
  log(`wallet before: balance ${before.balance}, pending top-ups ${before.pending_topups}`);

  const topup = await expectStatus(201, 'POST', '/v1/wallet/topups', {
    token,
    body: { package_id: packageId },
    headers: { 'idempotency-key': randomUUID() },
  });
  log(`top-up ${topup.id}: package ${topup.package_id}, ${topup.credits} credits for ${topup.amount} ${topup.currency}, ${topup.status}`);
  if (topup.status !== 'pending') fail(`a new top-up should be pending, is ${topup.status}`);
  if (!Number.isInteger(topup.credits) || topup.credits <= 0) fail(`the top-up has no credits: ${JSON.stringify(topup)}`);
  if (!isLocal(topup.checkout_url)) fail(`checkout_url is not local (is APP_PUBLIC_URL set to the server?): ${topup.checkout_url}`);
  const want = before.balance + topup.credits;

  const blocked = [];
  const noLeaks = () => {
    if (blocked.length) fail(`the browser tried to reach non-local hosts: ${blocked.join(', ')}`);
  };
  const browser = await launchLocalChromium(fail);
  let page;
  try {
    // Requests to non-local hosts are aborted and recorded in blocked (failing the run below).
    const context = await newLocalContext(browser, blocked);
    page = await context.newPage();
    const pageErrors = [];
    page.on('pageerror', (err) => pageErrors.push(err.message));

    log(`opening ${topup.checkout_url}`);
    const res = await page.goto(topup.checkout_url, { waitUntil: 'load' });
    if (!res || res.status() !== 200) fail(`the checkout page answered ${res?.status()}`);
    await page.getByRole('heading', { name: 'Sandbox checkout' }).waitFor();
    const statusBefore = (await page.locator('#status').textContent())?.trim();
    if (statusBefore !== 'open') fail(`the checkout session should be open, is ${statusBefore}`);
    noLeaks();
    if ((await wallet(token)).balance !== before.balance) fail('credits arrived before anything was paid');

    log('pressing Pay');
    const pay = page.getByRole('button', { name: 'Pay', exact: true });
    const [payResponse] = await Promise.all([
      page.waitForResponse((r) => r.request().method() === 'POST' && new URL(r.url()).pathname.endsWith('/pay')),
      pay.click(),
    ]);
    if (payResponse.status() !== 303) fail(`POST ${payResponse.url()} answered ${payResponse.status()}, want 303 (see other)`);
    // The form redirects back to the page, which now shows the outcome.
    await page.locator('#status', { hasText: /^complete$/ }).waitFor();
    await page.locator('#payment', { hasText: /^paid$/ }).waitFor();
    if (await page.getByRole('button', { name: 'Pay', exact: true }).count()) fail('the Pay button is still there after paying');
    log('the checkout page shows: complete, paid');
    noLeaks();
    if (pageErrors.length) fail(`the page threw: ${pageErrors.join('; ')}`);

    // The credits arrive through the webhook and its job, not the redirect: poll the wallet.
    const deadline = Date.now() + waitMs;
    let w = await wallet(token);
    while (w.balance !== want && Date.now() < deadline) {
      if (w.balance > want) break;
      await new Promise((r) => setTimeout(r, 100));
      w = await wallet(token);
    }
    if (w.balance !== want) {
      fail(`after ${waitMs} ms the wallet holds ${w.balance} credits, want exactly ${want} (${before.balance} + ${topup.credits})`);
    }
    log(`wallet after: balance ${w.balance}, pending top-ups ${w.pending_topups}`);
    if (w.pending_topups !== before.pending_topups) {
      fail(`pending top-ups ${w.pending_topups}, want ${before.pending_topups} once paid`);
    }
    const settled = await expectStatus(200, 'GET', `/v1/wallet/topups/${topup.id}`, { token });
    if (settled.status !== 'succeeded') fail(`top-up ${topup.id} is ${settled.status}, want succeeded`);
    noLeaks();
    log(`ok: ${topup.credits} credits in the wallet after paying in the browser`);
  } catch (err) {
    if (page) {
      try {
        const dir = await mkdtemp(join(tmpdir(), 'parlor-e2e-'));
        await page.screenshot({ path: join(dir, 'failure.png'), fullPage: true, timeout: 5_000 });
        await writeFile(join(dir, 'failure.html'), await page.content());
        console.error(`sandbox-topup: screenshot and HTML of ${page.url()} saved in ${dir}`);
      } catch (shotErr) {
        console.error(`sandbox-topup: could not save a screenshot: ${shotErr.message}`);
      }
    }
    if (blocked.length) console.error(`sandbox-topup: blocked requests to non-local hosts: ${blocked.join(', ')}`);
    throw err;
  } finally {
    await browser.close();
  }
}

const watchdog = setTimeout(() => {
  console.error(`sandbox-topup: FAIL: still running after 90 s`);
  process.exit(1);
}, 90_000);
watchdog.unref();

try {
  await main();
  log('PASS');
  process.exitCode = 0;
} catch (err) {
  console.error(`sandbox-topup: FAIL: ${err instanceof Failure ? err.message : err.stack ?? err}`);
  process.exitCode = 1;
}
