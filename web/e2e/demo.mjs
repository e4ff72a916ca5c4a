// Browser end-to-end test of the demo web client served at /: two people, each in their own
// browser context, use it the way anyone would, and every step waits for what they would see.
//
//   1. Ann registers and creates a room; Bob registers and joins it from the public list.
//   2. Ann sends a message; Bob sees it arrive live, on the same page (no reload).
//   3. Bob types; Ann sees "Bob is typing…".
//   4. Ann buys credits: the demo sends her to the sandbox's checkout page, she presses Pay,
//      goes back to Parlor, and the balance shows the credits once the top-up settles.
//   5. Ann tips Bob; her balance drops and Bob's rises, live.
//   6. Ann reloads the page: still signed in, the room reopens with its history.
//
// Run by cmd/parlor/browser_test.go (part of `go tool task test`) against a fresh
// `parlor serve` with the sandbox payment provider; by hand:
//
//   PARLOR_BASE_URL=http://127.0.0.1:8080 node web/e2e/demo.mjs
//
// Environment:
//   PARLOR_BASE_URL  the server, on a local host only (required)
//   CHROMIUM_PATH    the browser (default: /usr/bin/chromium, Debian's `chromium`)
//
// Exits 0 when every step passed; otherwise prints what went wrong, saves a screenshot and
// the HTML of each page to a temporary directory, and exits 1. Nothing may leave the machine:
// requests to any other host are aborted and fail the run, as do page errors and
// Content-Security-Policy violations.
import { randomBytes } from 'node:crypto';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { isLocal, launchLocalChromium, newLocalContext } from './local-chromium.mjs';

const baseURL = process.env.PARLOR_BASE_URL ?? '';
const PACKAGE_CREDITS = 100; // the "small" package of the default APP_CREDIT_PACKAGES
const TIP = 5;

const started = Date.now();
const log = (msg) => console.log(`[demo +${((Date.now() - started) / 1000).toFixed(2)}s] ${msg}`);

class Failure extends Error {}
const fail = (msg) => {
  throw new Failure(msg);
};

// Everything a page did that fails the run, whichever step it happened in.
const blocked = [];
const pageErrors = [];
const cspViolations = [];

// How many of a page's last socket and console happenings a failure prints.
const TRAIL = 40;

async function newPerson(browser, name) {
  const context = await newLocalContext(browser, blocked);
  const page = await context.newPage();
  // What the page's sockets and console did, for a failure to show (the last TRAIL of it).
  const trail = [];
  const note = (what) => {
    trail.push(`+${((Date.now() - started) / 1000).toFixed(2)}s ${what}`);
    if (trail.length > TRAIL) trail.shift();
  };
  page.on('pageerror', (err) => pageErrors.push(`${name}: ${err.message}`));
  page.on('console', (msg) => {
    if (/Content.Security.Policy/i.test(msg.text())) cspViolations.push(`${name}: ${msg.text()}`);
    if (msg.type() === 'error') log(`${name}'s console: ${msg.text()}`);
    note(`console.${msg.type()}: ${msg.text()}`);
  });
  const person = { name, page, trail, readMarkers: 0 }; // read.updated events seen
  page.on('websocket', (ws) => {
    note('socket opened');
    ws.on('framereceived', ({ payload }) => {
      const frame = parseFrame(payload);
      person.readMarkers += eventsOf(frame).filter((e) => e.type === 'read.updated').length;
      note(`socket frame: ${frameSummary(frame, payload)}`);
    });
    ws.on('socketerror', (err) => note(`socket error: ${err}`));
    ws.on('close', () => note('socket closed'));
  });
  return person;
}

/** parseFrame returns a server frame, or undefined when the payload is not JSON. */
function parseFrame(payload) {
  try {
    return JSON.parse(payload);
  } catch {
    return undefined;
  }
}

/** eventsOf returns the room events a frame carries: one for `event`, several for `events`. */
const eventsOf = (frame) => (frame?.type === 'event' ? [frame.event] : frame?.type === 'events' ? frame.events : []);

/** frameSummary names a server frame by its type, and its events by theirs and their seqs. */
function frameSummary(frame, payload) {
  if (!frame) return `${String(payload).length} bytes, not JSON`;
  const events = eventsOf(frame).map((e) => `${e.type} seq ${e.seq}`);
  return events.length ? `${frame.type} ${events.join(', ')}` : frame.type;
}

function checkHealth() {
  if (blocked.length) fail(`the browser tried to reach non-local hosts: ${blocked.join(', ')}`);
  if (pageErrors.length) fail(`a page threw: ${pageErrors.join('; ')}`);
  if (cspViolations.length) fail(`Content-Security-Policy violations: ${cspViolations.join('; ')}`);
}

/** register opens the demo and creates an account through its form. */
async function register({ page, name }, email) {
  const res = await page.goto(new URL('/', baseURL).href);
  if (!res || res.status() !== 200) fail(`GET / answered ${res?.status()}`);
  await page.getByRole('heading', { name: 'Create an account' }).waitFor();
  const form = page.locator('#register-form');
  await form.getByLabel('Display name').fill(name);
  await form.getByLabel('Email').fill(email);
  await form.getByLabel('Password').fill('correct horse battery');
  await form.getByRole('button', { name: 'Create account' }).click();
  await page.locator('#me-name', { hasText: name }).waitFor();
  await live(page);
  log(`${name} registered and is signed in`);
}

/** live waits until the page's realtime socket says hello. */
const live = (page) => page.locator('#connection.live', { hasText: 'live' }).waitFor();

const balance = (page, credits) => page.locator('#balance', { hasText: new RegExp(`^${credits}$`) }).waitFor();

async function main() {
  if (!baseURL) fail('PARLOR_BASE_URL is not set (e.g. http://127.0.0.1:8080)');
  if (!isLocal(baseURL)) fail(`PARLOR_BASE_URL must be on a local host (127.0.0.1, localhost, [::1]), not ${baseURL}`);
  const run = randomBytes(4).toString('hex');
  const roomName = `Demo ${run}`;

  const browser = await launchLocalChromium(fail);
  log('Chromium started');
  const people = [];
  try {
    const ann = await newPerson(browser, 'Ann');
    const bob = await newPerson(browser, 'Bob');
    people.push(ann, bob);

    // 1. Ann registers and creates a room; Bob registers and joins it.
    await register(ann, `ann-${run}@example.com`);
    await ann.page.getByText('Create a room', { exact: true }).click();
    const create = ann.page.locator('#create-room-form');
    await create.getByLabel('Name', { exact: true }).fill(roomName);
    await create.getByLabel('Topic').fill('Where the demo happens');
    await create.getByRole('button', { name: 'Create room' }).click();
    await ann.page.locator('#room-title', { hasText: roomName }).waitFor();
    log(`Ann created and opened "${roomName}"`);

    await register(bob, `bob-${run}@example.com`);
    await bob.page.getByRole('button', { name: `Join ${roomName}` }).click();
    await bob.page.locator('#room-title', { hasText: roomName }).waitFor();
    await ann.page.locator('.members li', { hasText: 'Bob' }).waitFor(); // Ann sees him arrive
    log('Bob joined from the public room list; Ann sees him among the members');
    checkHealth();

    // 2. Ann's message reaches Bob live, on the page he already has open.
    await bob.page.evaluate(() => {
      window.demoTestMarker = 'not reloaded';
    });
    const hello = `Hello Bob, it is ${run}`;
    await ann.page.getByLabel('Message', { exact: true }).fill(hello);
    await ann.page.getByLabel('Message', { exact: true }).press('Enter');
    await ann.page.locator('.message:not(.pending)', { hasText: hello }).waitFor();
    await bob.page.locator('.message', { hasText: hello }).filter({ hasText: 'Ann' }).waitFor();
    if ((await bob.page.evaluate(() => window.demoTestMarker)) !== 'not reloaded') fail("Bob's page reloaded");
    log("Ann's message appeared on Bob's page without a reload");

    // Both have the room open and have read everything: the read markers settle, however slow
    // the machine is. (Each moved marker is a room event; a page that took the other's marker
    // as something new to mark read would answer it, for ever: a marker every half second.)
    const markers = () => ann.readMarkers + bob.readMarkers;
    const settleBy = Date.now() + 10_000;
    for (let before = markers(); ; ) {
      await sleep(1_500);
      if (markers() === before) break;
      if (Date.now() > settleBy) fail(`the read markers did not settle: ${markers()} read.updated events, still coming 10 s after the last message`);
      before = markers();
    }
    log('the read markers settle once both have read the message');

    // 3. Bob types; Ann sees it.
    await bob.page.getByLabel('Message', { exact: true }).pressSequentially('Hi Ann, one moment', { delay: 20 });
    await ann.page.locator('.typing', { hasText: 'Bob is typing…' }).waitFor();
    log('Ann sees "Bob is typing…"');

    // 4. Ann buys credits on the sandbox checkout page and comes back to see them.
    await balance(ann.page, 0);
    await ann.page.getByRole('button', { name: `Buy ${PACKAGE_CREDITS} credits` }).click();
    await ann.page.getByRole('heading', { name: 'Sandbox checkout' }).waitFor();
    log(`Ann is on the checkout page ${ann.page.url()}`);
    await ann.page.getByRole('button', { name: 'Pay', exact: true }).click();
    await ann.page.locator('#status', { hasText: /^complete$/ }).waitFor();
    await ann.page.getByRole('link', { name: 'Back to Parlor' }).click();
    await ann.page.locator('#topup-status', { hasText: `${PACKAGE_CREDITS} credits added.` }).waitFor();
    await balance(ann.page, PACKAGE_CREDITS);
    await ann.page.locator('#room-title', { hasText: roomName }).waitFor(); // back where she was
    log(`Ann paid; back in the demo her balance shows ${PACKAGE_CREDITS} credits`);
    checkHealth();

    // 5. Ann tips Bob; both balances move, Bob's live.
    await balance(bob.page, 0);
    await live(ann.page);
    const tip = ann.page.locator('form.tip');
    await tip.getByLabel('To', { exact: true }).selectOption({ label: 'Bob' });
    await tip.getByLabel('Credits', { exact: true }).fill(String(TIP));
    await tip.getByLabel('Note (optional)', { exact: true }).fill('for the demo');
    await tip.getByRole('button', { name: 'Send tip' }).click();
    await balance(ann.page, PACKAGE_CREDITS - TIP);
    await balance(bob.page, TIP);
    await bob.page.locator('.notice', { hasText: `Ann tipped Bob ${TIP} credits` }).waitFor();
    if ((await bob.page.evaluate(() => window.demoTestMarker)) !== 'not reloaded') fail("Bob's page reloaded");
    log(`Ann tipped Bob ${TIP}: her balance shows ${PACKAGE_CREDITS - TIP}, his ${TIP} (live)`);

    // 6. Ann reloads: still signed in, and the room's history is there.
    await ann.page.reload();
    await ann.page.locator('#me-name', { hasText: 'Ann' }).waitFor();
    await ann.page.locator('#room-title', { hasText: roomName }).waitFor();
    await ann.page.locator('.message', { hasText: hello }).waitFor();
    await balance(ann.page, PACKAGE_CREDITS - TIP);
    await live(ann.page);
    log('after a reload Ann is still signed in and sees the history');
    checkHealth();
  } catch (err) {
    for (const { name, page, trail } of people) {
      const status = await page.locator('#connection').textContent({ timeout: 2_000 }).catch(() => '(none)');
      console.error(`demo: ${name}'s status line: ${status}; the page's last socket and console happenings:\n  ${trail.join('\n  ')}`);
      try {
        const dir = await mkdtemp(join(tmpdir(), `parlor-demo-${name.toLowerCase()}-`));
        await page.screenshot({ path: join(dir, 'failure.png'), fullPage: true, timeout: 5_000 });
        await writeFile(join(dir, 'failure.html'), await page.content());
        console.error(`demo: ${name}'s page (${page.url()}): screenshot and HTML saved in ${dir}`);
      } catch (shotErr) {
        console.error(`demo: could not save ${name}'s page: ${shotErr.message}`);
      }
    }
    if (blocked.length) console.error(`demo: blocked requests to non-local hosts: ${blocked.join(', ')}`);
    if (pageErrors.length) console.error(`demo: page errors: ${pageErrors.join('; ')}`);
    throw err;
  } finally {
    await browser.close();
  }
}

const watchdog = setTimeout(() => {
  console.error('demo: FAIL: still running after 90 s');
  process.exit(1);
}, 90_000);
watchdog.unref();

try {
  await main();
  log('PASS');
  process.exitCode = 0;
} catch (err) {
  console.error(`demo: FAIL: ${err instanceof Failure ? err.message : err.stack ?? err}`);
  process.exitCode = 1;
}
