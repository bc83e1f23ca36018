// The console's acceptance (issue 14) in Debian's chromium, driven by playwright-core.
// Run by console_acceptance.sh, which starts kagi and makes the people; it passes
//   BASE (https://127.0.0.1:PORT), WORK (kagi's folder), KAGI (the binary), SHOTS (where
//   screenshots go) and PLAYWRIGHT_DIR (where npm installed playwright-core).
// Checks, as the issue numbers them:
//   1. an officer creates a key with usage limit 5 and sees 0/5; three `kagi sign` later the
//      reloaded page shows 3/5;
//   2. two officers in two browser contexts approve a 2-of-3 destroy: after the first the key
//      is still active, after the second it is gone; the requester's own approval is refused;
//   3. an auditor sees "Verified"; after one audit record is changed in the SQLite file the
//      page names it as the first bad record; the auditor has no create controls and a forged
//      POST gets 403;
//   4. a form without its CSRF token is refused; five wrong passwords lock password sign-in;
//      an enrolled TOTP authenticator is asked for, and each code works once;
//   5. screenshots of the overview (with its per-day chart), keys, lines-and-quotas (a
//      pipeline's quota at 2/10), policies (a side-by-side diff) and audit pages (PNG, paths
//      printed);
//   and, beyond the list: the Keys page's Disable/Enable buttons, the per-line
//   issuance chart, and that replacing an enrolled authenticator asks for its code;
//   6. no request leaves 127.0.0.1 (every other request fails the test), and no page breaks
//      its Content-Security-Policy.
import { createRequire } from 'node:module';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

const require = createRequire(import.meta.url);
const { chromium } = require(path.join(process.env.PLAYWRIGHT_DIR, 'node_modules', 'playwright-core'));
const { BASE, WORK, KAGI, SHOTS } = process.env;

let passed = 0;
const offsite = [];
const cspViolations = [];

function ok(what) {
  passed += 1;
  console.log(`ok: ${what}`);
}

function kagi(...args) {
  return execFileSync(KAGI, args, { cwd: WORK, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

async function newContext(browser) {
  // kagi's TLS certificate comes from the instance's own CA, which this fresh profile does not
  // trust; the connection is still HTTPS, so Secure and __Host- cookies behave as in production.
  const context = await browser.newContext({ ignoreHTTPSErrors: true, baseURL: BASE });
  await context.route('**/*', (route) => {
    const url = new URL(route.request().url());
    if (url.hostname !== '127.0.0.1') {
      offsite.push(url.href);
      return route.abort('blockedbyclient');
    }
    return route.continue();
  });
  context.on('page', (page) => {
    page.on('console', (msg) => {
      if (/Content Security Policy/i.test(msg.text())) cspViolations.push(msg.text());
    });
  });
  return context;
}

async function signIn(context, name, password, code) {
  const page = await context.newPage();
  await page.goto('/ui');
  await page.getByLabel('Name').fill(name);
  if (code) await page.getByLabel('One-time code').fill(code);
  await page.getByLabel('Password').fill(password);
  // The keyboard is enough: Enter in the password field submits.
  await page.getByLabel('Password').press('Enter');
  await page.locator('#signed-in-as, p.error').first().waitFor();
  return page;
}

// RFC 6238 (HMAC-SHA1, 30 s, 6 digits) written here from the RFC, independently of kagi's.
function totp(base32, step) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = '';
  for (const c of base32.replace(/=+$/, '').toUpperCase()) {
    bits += alphabet.indexOf(c).toString(2).padStart(5, '0');
  }
  const bytes = [];
  for (let i = 0; i + 8 <= bits.length; i += 8) bytes.push(parseInt(bits.slice(i, i + 8), 2));
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(step));
  const mac = crypto.createHmac('sha1', Buffer.from(bytes)).update(counter).digest();
  const offset = mac[mac.length - 1] & 0x0f;
  const bin = ((mac[offset] & 0x7f) << 24) | (mac[offset + 1] << 16) | (mac[offset + 2] << 8) | mac[offset + 3];
  return String(bin % 1000000).padStart(6, '0');
}

async function shot(page, name) {
  const file = path.join(SHOTS, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  console.log(`screenshot: ${file}`);
}

async function usage(page, key) {
  return (await page.locator(`[data-key="${key}"]`).textContent()).trim();
}

async function notice(page) {
  return (await page.locator('p.notice, p.error').first().textContent()).trim();
}

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  headless: true,
  // Playwright gives each launch a fresh temporary --user-data-dir of its own.
  args: [
    '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
});

try {
  // 1. An officer creates a key with a limit of 5 and watches its uses.
  const olgaCtx = await newContext(browser);
  const olga = await signIn(olgaCtx, 'olga', 'olga-passphrase-1');
  const who = await olga.locator('#signed-in-as').textContent();
  assert.match(who, /olga/);
  assert.match(who, /officer/);
  await olga.getByRole('link', { name: 'Keys' }).click();
  await olga.getByLabel('Name').fill('k5');
  await olga.getByLabel('Algorithm').selectOption('ec-p256');
  await olga.getByLabel('Usage limit').fill('5');
  await olga.getByRole('button', { name: 'Create key' }).click();
  await olga.locator('p.notice').waitFor();
  assert.equal(await usage(olga, 'k5'), '0/5');
  ok('an officer created key k5 with usage limit 5 and sees 0/5');

  fs.writeFileSync(path.join(WORK, 'a.bin'), 'console acceptance\n');
  for (let i = 0; i < 3; i += 1) kagi('sign', '--key', 'k5', 'a.bin', '-o', 'a.sig');
  await olga.goto('/ui/keys');
  assert.equal(await usage(olga, 'k5'), '3/5');
  await shot(olga, 'keys');
  ok('after three `kagi sign` calls the reloaded keys page shows 3/5');

  // 2. The destroy request goes to the 2-of-3 quorum.
  await olga.getByRole('button', { name: 'Request destruction of k5' }).click();
  const filed = await notice(olga);
  const id = (filed.match(/request (\S+) is on the approvals page/) || [])[1];
  assert.ok(id, `no approval request in: ${filed}`);
  await olga.goto('/ui');
  assert.match(await olga.locator('#pending-h + table, #pending-h ~ table').first().textContent(), new RegExp(id));
  assert.equal(await olga.locator('figure.chart svg[role="img"]').count(), 1);
  assert.match(await olga.locator('figure.chart svg').getAttribute('aria-label'), /per day, last 14 days: /);
  await shot(olga, 'overview');
  ok('the overview lists the pending request and charts log entries per day');

  // 5. The lines-and-quotas page: the pipeline's quota with its bars.
  await olga.getByRole('link', { name: 'Lines and quotas' }).click();
  assert.equal((await olga.locator('[data-quota="ci-build-signs:total"]').textContent()).trim(), '2/10');
  assert.equal((await olga.locator('[data-quota="ci-build-signs:day"]').textContent()).trim(), '2/5');
  const chart = olga.locator('figure.chart[data-line="default:admin"] svg');
  assert.equal(await chart.count(), 1);
  assert.match(await chart.getAttribute('aria-label'), /certificates per day, last 14 days: .*\d{4}-\d\d-\d\d: [1-9]/);
  await shot(olga, 'line-quotas');
  ok('the lines-and-quotas page shows ci-build at 2/10 in total and 2/5 today, and charts the certificates each identity issued per day');

  // Disable: the key refuses to sign until enabled again.
  await olga.goto('/ui/keys');
  await olga.getByRole('button', { name: 'Disable build' }).click();
  assert.match(await notice(olga), /is disabled \(suspended\)/);
  assert.equal((await olga.locator('#key-build .state').textContent()).trim(), 'suspended (disabled)');
  assert.throws(() => kagi('sign', '--key', 'build', 'a.bin', '-o', 'b.sig'), /key_suspended/);
  assert.match(kagi('key', 'show', 'build'), /state:\s+suspended/);
  await shot(olga, 'keys-disabled');
  await olga.getByRole('button', { name: 'Enable build' }).click();
  assert.match(await notice(olga), /is enabled again/);
  assert.equal((await olga.locator('#key-build .state').textContent()).trim(), 'active');
  kagi('sign', '--key', 'build', 'a.bin', '-o', 'b.sig');
  ok('the Disable button suspends key build (kagi sign gets key_suspended) and Enable brings it back');

  await olga.goto('/ui/approvals');
  await olga.getByRole('button', { name: `Approve request ${id}` }).click();
  assert.match(await notice(olga), /self_approval/);
  ok('the requester\'s own approval is refused (self_approval)');

  const oscarCtx = await newContext(browser);
  const oscar = await signIn(oscarCtx, 'oscar', 'oscar-passphrase-2');
  await oscar.goto('/ui/approvals');
  await oscar.getByRole('button', { name: `Approve request ${id}` }).click();
  assert.match(await notice(oscar), new RegExp(`approved request ${id}; it is now pending`));
  await olga.goto('/ui/keys');
  assert.equal((await olga.locator('#key-k5 .state').textContent()).trim(), 'active');
  ok('after the first approval (oscar) k5 is still active');

  const ottoCtx = await newContext(browser);
  const otto = await signIn(ottoCtx, 'otto', 'otto-passphrase-3');
  await otto.goto('/ui/approvals');
  await otto.getByRole('button', { name: `Approve request ${id}` }).click();
  assert.match(await notice(otto), /it is now executed/);
  await olga.goto('/ui/keys');
  assert.equal(await olga.locator('#key-k5').count(), 0);
  assert.doesNotMatch(kagi('key', 'list'), /\bk5\b/);
  ok('after the second approval (otto, another browser context) k5 is destroyed');

  // Policies: a mistake is named with its line; a new version goes to the quorum.
  await olga.getByRole('link', { name: 'Policies' }).click();
  const current = fs.readFileSync(path.join(WORK, 'quorum.toml'), 'utf8');
  await olga.getByLabel('Policy document (TOML)').fill(`${current}\nbogus = 1\n`);
  await olga.getByRole('button', { name: 'Submit as a new version' }).click();
  assert.match(await notice(olga), /policy_invalid.*line \d+/);
  const next = current.replace('total = 10', 'total = 20');
  await olga.getByLabel('Policy document (TOML)').fill(next);
  await olga.getByRole('button', { name: 'Submit as a new version' }).click();
  assert.match(await notice(olga), /Stored as version 2/);
  assert.match(await olga.locator('table.diff td.removed').first().textContent(), /total = 10/);
  assert.match(await olga.locator('table.diff td.added').first().textContent(), /total = 20/);
  await olga.getByRole('button', { name: 'Activate version 2' }).click();
  assert.match(await notice(olga), /needs 2 approval\(s\): request \S+ is on the approvals page/);
  await shot(olga, 'policies');
  ok('a policy with a mistake is refused naming its line; version 2 is shown side by side and its activation goes to the quorum');

  await olga.getByRole('link', { name: 'CAs' }).click();
  assert.equal(await olga.locator('#ca-root #ca-code-signing').count(), 1);
  await shot(olga, 'cas');
  ok('the CAs page shows the hierarchy (code-signing under root)');

  // 4a. A form without its CSRF token is refused, and nothing is made.
  const noToken = await olgaCtx.request.post('/ui/keys', {
    form: { name: 'no-csrf', alg: 'ec-p256', usage_limit: '1' },
  });
  assert.equal(noToken.status(), 403);
  assert.match(await noToken.text(), /csrf_rejected/);
  assert.doesNotMatch(kagi('key', 'list'), /no-csrf/);
  ok('a form posted without the CSRF token gets 403 csrf_rejected and creates nothing');

  // 3. The auditor: no create controls, a forged POST is 403, the log verifies.
  const audeCtx = await newContext(browser);
  const aude = await signIn(audeCtx, 'aude', 'aude-passphrase-4');
  await aude.goto('/ui/keys');
  assert.equal(await aude.locator('form[action="/ui/keys"]').count(), 0);
  assert.equal(await aude.getByRole('button', { name: /Request destruction/ }).count(), 0);
  const audeCsrf = await aude.locator('input[name="csrf"]').first().getAttribute('value');
  const forged = await audeCtx.request.post('/ui/keys', {
    form: { csrf: audeCsrf, name: 'aude-key', alg: 'ec-p256' },
  });
  assert.equal(forged.status(), 403);
  assert.match(await forged.text(), /forbidden/);
  ok('the auditor sees no create controls, and a forged create (with a valid CSRF token) gets 403');

  await aude.getByRole('link', { name: 'Audit' }).click();
  assert.match(await aude.locator('#verification').textContent(), /Verified through record \d+/);
  assert.match(await aude.locator('#tlog').textContent(), /Latest checkpoint: \d+ entries, signed at /);
  await shot(aude, 'audit');
  ok('the auditor sees the audit log verified');

  // The second factor: aude enrols an authenticator (the QR code is drawn by kagi); from then
  // on her password alone is not enough, and a code works once.
  await aude.getByRole('link', { name: 'Authenticator' }).click();
  assert.equal(await aude.locator('figure.qr svg').count(), 1);
  const secret = (await aude.locator('#totp-secret').textContent()).trim();
  const step = () => Math.floor(Date.now() / 1000 / 30);
  await aude.getByLabel('Code from the new app').fill(totp(secret, step()));
  await aude.getByRole('button', { name: 'Enrol' }).click();
  assert.match(await notice(aude), /The authenticator is enrolled/);
  assert.equal(await aude.getByLabel('Code from the enrolled authenticator').count(), 1);
  await shot(aude, 'authenticator');
  const audeAgain = await newContext(browser);
  const noCode = await signIn(audeAgain, 'aude', 'aude-passphrase-4');
  assert.match(await notice(noCode), /totp_required/);
  const nextCode = totp(secret, step() + 1);
  const withCode = await signIn(audeAgain, 'aude', 'aude-passphrase-4', nextCode);
  assert.match(await withCode.locator('#signed-in-as').textContent(), /aude/);
  const replay = await signIn(await newContext(browser), 'aude', 'aude-passphrase-4', nextCode);
  assert.match(await notice(replay), /wrong name or password/);
  ok('an enrolled authenticator is asked for at sign-in; its code signs in once and is refused the second time');

  // 4b. Five wrong passwords lock password sign-in for lars.
  const larsCtx = await newContext(browser);
  for (let i = 1; i <= 5; i += 1) {
    const p = await signIn(larsCtx, 'lars', 'not-lars-password');
    const text = await notice(p);
    if (i < 5) assert.match(text, /wrong name or password/);
    else assert.match(text, /password_locked/);
    await p.close();
  }
  const locked = await signIn(larsCtx, 'lars', 'lars-passphrase-5');
  assert.match(await notice(locked), /password_locked/);
  ok('five wrong passwords lock lars\'s password sign-in; the right one is refused while locked');

  // 3 (continued). One record changed in the database: the page names it.
  const db = path.join(WORK, 'kagi-data', 'kagi.db');
  const seq = execFileSync('python3', ['-c', `
import sqlite3, sys
c = sqlite3.connect(sys.argv[1], timeout=30)
seq = c.execute("SELECT MAX(seq) / 2 FROM audit_records").fetchone()[0]
c.execute("UPDATE audit_records SET outcome = 'ok-ish' WHERE seq = ?", (seq,))
c.commit()
print(seq)
`, db], { encoding: 'utf8' }).trim();
  await aude.goto('/ui/audit');
  const verdict = await aude.locator('#verification').textContent();
  assert.match(verdict, new RegExp(`first bad record is record ${seq}\\b`));
  await shot(aude, 'audit-tampered');
  ok(`after record ${seq} was changed in SQLite the audit page names it as the first bad record`);

  // 6. Nothing left 127.0.0.1, and no page broke its CSP.
  assert.deepEqual(offsite, []);
  assert.deepEqual(cspViolations, []);
  ok('no request left 127.0.0.1 and no page reported a Content-Security-Policy violation');
  console.log(`${passed} passed, 0 failed`);
} catch (e) {
  console.error(e);
  console.log(`${passed} passed, 1 failed`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
