// Browser driver for the end-to-end test (tests/e2e_space.rs): headless Debian Chromium through
// playwright-core, opening the Space through the proxy like a user would.
//
//   node browser.mjs '<json scenario>'     (E2E_NODE_MODULES = dir holding playwright-core)
//
// Scenario fields: url, host ("space.test"), hub + embedded (the app in the iframe of the hub's
// page at `url`), proxy ("192.168.77.1"), profile (user-data dir;
// reuse it to be the same browser again), token (null: leave the secret empty), expect
// ("connected" | "denied"), message + reply (send one, wait for the other), history (texts that
// must be on the page after connecting), shots (dir), name (screenshot prefix), deadlineMs.
//
// Prints one JSON line per milestone ({"event":...,"at":<epoch ms>}) and a last line
// {"ok":true|false,...}; exits 0 only when the scenario's expectation held.
import { createRequire } from 'node:module';

const { chromium } = createRequire(`${process.env.E2E_NODE_MODULES}/`)('playwright-core');
const s = JSON.parse(process.argv[2]);
const deadline = Date.now() + (s.deadlineMs ?? 180000);
const left = () => Math.max(1, deadline - Date.now());
const say = (event, extra = {}) => console.log(JSON.stringify({ event, at: Date.now(), ...extra }));

const ctx = await chromium.launchPersistentContext(s.profile, {
  executablePath: '/usr/bin/chromium',
  viewport: { width: 1280, height: 800 },
  args: [
    '--no-sandbox', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run',
    // The Space's host name (and the Hub's) resolve to the proxy, with no /etc/hosts edit.
    `--host-resolver-rules=MAP ${s.host} ${s.proxy}${s.hub ? `, MAP ${s.hub} ${s.proxy}` : ''}`,
    // HF serves https; here the proxy is plain http. The Control UI needs a secure context
    // (WebCrypto for its device identity), so treat these origins as secure.
    `--unsafely-treat-insecure-origin-as-secure=http://${s.host}${s.hub ? `,http://${s.hub}` : ''}`,
  ],
});
const page = ctx.pages()[0] ?? (await ctx.newPage());
// `embedded`: `url` is the Hub's page and the app is in its iframe (the Space page's App tab).
const ui = s.embedded ? page.frameLocator('iframe') : page;

// What the gateway says to this browser: every connect answer, and whether hello-ok ever came.
const connectErrors = [];
let helloOk = false;
page.on('websocket', (ws) => ws.on('framereceived', (f) => {
  const text = String(f.payload);
  if (!text.includes('"type":"res"')) return;
  try {
    const m = JSON.parse(text);
    if (m.payload?.type === 'hello-ok') helloOk = true;
    if (m.ok === false && m.error) connectErrors.push(m.error.details?.code ?? m.error.code);
  } catch { /* not ours */ }
}));

async function finish(ok, extra = {}) {
  try { await page.screenshot({ path: `${s.shots}/${s.name}-${ok ? 'final' : 'failed'}.png` }); } catch { /* closed */ }
  console.log(JSON.stringify({ ok, connectErrors: [...new Set(connectErrors)], helloOk, ...extra }));
  await ctx.close();
  process.exit(ok ? 0 : 1);
}

try {
  // The gateway may still be starting (the proxy answers 502): reload until the UI is served.
  for (;;) {
    const res = await page.goto(s.url, { timeout: left() }).catch(() => null);
    if (res?.status() === 200) break;
    if (Date.now() >= deadline) await finish(false, { error: `the page never loaded (last status ${res?.status()})` });
    await page.waitForTimeout(1000); // pacing between reloads, not synchronisation
  }
  say('page');

  const tokenBox = ui.getByPlaceholder('Paste the token');
  const connected = ui.getByText('Connected', { exact: true });
  // A known browser may connect by itself; a new one is asked for the secret.
  await tokenBox.or(connected).first().waitFor({ timeout: left() });
  if (await tokenBox.isVisible()) {
    say('token-form');
    if (s.token) await tokenBox.fill(s.token);
    await ui.getByRole('button', { name: 'Connect', exact: true }).click();
  }

  if (s.expect === 'denied') {
    // Wait for the gateway's answer to this browser's connect, then watch a while longer:
    // the page retries, and none of its attempts may get through.
    while (connectErrors.length === 0 && Date.now() < deadline) await page.waitForTimeout(200);
    if (connectErrors.length === 0) await finish(false, { error: 'the gateway never answered the connect' });
    const watchUntil = Math.min(deadline, Date.now() + (s.watchMs ?? 10000));
    while (Date.now() < watchUntil) {
      if (helloOk || (await connected.isVisible())) await finish(false, { error: 'connected without a valid token' });
      await page.waitForTimeout(250);
    }
    await finish(!helloOk, { denied: true });
  }

  await connected.waitFor({ timeout: left() });
  say('connected');
  await page.screenshot({ path: `${s.shots}/${s.name}-connected.png` });

  for (const text of s.history ?? []) {
    const seen = ui.getByText(text).first();
    if (!(await seen.isVisible())) {
      // Not on the landing view: open the main session from the sidebar.
      const main = ui.getByText('Main Session').first();
      if (await main.isVisible()) await main.click();
    }
    await seen.waitFor({ timeout: left() });
    say('history', { text });
  }
  if (s.history?.length) await page.screenshot({ path: `${s.shots}/${s.name}-history.png` });

  if (s.message) {
    const box = ui.getByPlaceholder(/^Message/).first();
    await box.fill(s.message);
    await box.press('Enter');
    say('sent');
    await ui.getByText(s.reply).first().waitFor({ timeout: left() });
    say('reply');
    await page.screenshot({ path: `${s.shots}/${s.name}-chat.png` });
  }
  await finish(true);
} catch (e) {
  await finish(false, { error: String(e.message ?? e).split('\n')[0] });
}
