// What the browser end-to-end tests share: headless Debian Chromium driven by
// playwright-core, kept on this machine. Chromium's own background traffic is turned off,
// no host name but the local ones resolves, and a context aborts (and records) every
// request to a non-local host, so nothing a test does leaves the machine.
import { existsSync } from 'node:fs';

const LOCAL_HOSTS = new Set(['127.0.0.1', 'localhost', '[::1]', '::1']);

// isLocal reports whether url is http(s) or ws(s) on a local host.
export function isLocal(url) {
  try {
    const u = new URL(url);
    return ['http:', 'https:', 'ws:', 'wss:'].includes(u.protocol) && LOCAL_HOSTS.has(u.hostname);
  } catch {
    return false;
  }
}

// launchLocalChromium starts the browser at CHROMIUM_PATH (default: Debian's
// /usr/bin/chromium); a missing browser or playwright-core is reported through fail.
export async function launchLocalChromium(fail) {
  const chromiumPath = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
  if (!existsSync(chromiumPath)) {
    fail(`no Chromium at ${chromiumPath}: install it with 'apt-get install -y chromium' (scripts/dev-services.sh does), or set CHROMIUM_PATH`);
  }
  let chromium;
  try {
    ({ chromium } = await import('playwright-core'));
  } catch (err) {
    fail(`cannot load playwright-core (${err.message}): run 'npm ci' at the repository root`);
  }
  return chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    timeout: 30_000,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--disable-quic',
      '--no-first-run',
      '--disable-domain-reliability',
      '--no-proxy-server', // a proxy from the environment would be a non-local host
      // Debian's launcher sets Google API keys, and Chromium still looks up Google's hosts
      // (accounts, clients2, update) despite the flags above: resolve no name but the local
      // ones, so not even a DNS query leaves the machine.
      '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1, EXCLUDE [::1]',
    ],
  });
}

// newLocalContext opens a browser context whose requests and sockets to non-local hosts are
// aborted and pushed onto blocked (the caller fails the run when it is not empty).
export async function newLocalContext(browser, blocked) {
  const context = await browser.newContext({ serviceWorkers: 'block' });
  context.setDefaultTimeout(20_000); // generous: the rest of the suite shares the cores
  await context.route('**/*', (route) => {
    const url = route.request().url();
    if (isLocal(url) || url.startsWith('data:') || url.startsWith('about:')) return route.continue();
    blocked.push(url);
    return route.abort('blockedbyclient');
  });
  context.on('websocket', (ws) => {
    if (!isLocal(ws.url())) blocked.push(ws.url());
  });
  return context;
}
