// Headless-browser end-to-end test of the Enclave web UI.
//
// Drives Debian's Chromium (/usr/bin/chromium) through playwright-core; no
// Playwright-managed browser download is needed or used.
//
// Environment:
//   ENCLAVE_URL        base URL of a running server, e.g. http://127.0.0.1:8080
//   ENCLAVE_USER       user name to log in with
//   ENCLAVE_PASSWORD   that user's password
//   ENCLAVE_QUESTION   a question the indexed corpus can answer (with citations)
//   ENCLAVE_FOLLOW_UPS two follow-ups to it that do not stand alone, separated by "|"
//   ENCLAVE_XSS_QUERY  a search query that finds a document whose text contains
//                      literal HTML/script markup (e.g. "<script>...")
//   SCREENSHOT_DIR     folder for ask.png, passage.png, search.png and, on
//                      failure, failure-<step>.png (created if missing)
//
// Optional:
//   ENCLAVE_ANSWER_TIMEOUT_S  how long to wait for an answer (default 180)
//   ENCLAVE_UI_TIMEOUT_S      watchdog for the whole run (default 900)
//   CHROMIUM_PATH             browser binary (default /usr/bin/chromium)
//
// Usage (from the repository root):
//   (cd tests/browser && npm ci)
//   ENCLAVE_URL=... ENCLAVE_USER=... ... node tests/browser/ui.mjs
//
// Prints one line per step; exits 0 when every check passes, 1 otherwise
// (after printing expected vs. seen, a page excerpt and saving a screenshot).

import { chromium, request as pwRequest } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import path from 'node:path';

// ---------------------------------------------------------------- config --

const REQUIRED = [
  'ENCLAVE_URL',
  'ENCLAVE_USER',
  'ENCLAVE_PASSWORD',
  'ENCLAVE_QUESTION',
  'ENCLAVE_FOLLOW_UPS',
  'ENCLAVE_XSS_QUERY',
  'SCREENSHOT_DIR',
];
const missing = REQUIRED.filter((k) => !process.env[k]);
if (missing.length) {
  console.error(`FAIL: missing environment variable(s): ${missing.join(', ')}`);
  process.exit(1);
}

const BASE = process.env.ENCLAVE_URL.replace(/\/+$/, '');
const USER = process.env.ENCLAVE_USER;
const PASSWORD = process.env.ENCLAVE_PASSWORD;
const QUESTION = process.env.ENCLAVE_QUESTION;
const FOLLOW_UPS = process.env.ENCLAVE_FOLLOW_UPS.split('|');
const XSS_QUERY = process.env.ENCLAVE_XSS_QUERY;
const SHOT_DIR = path.resolve(process.env.SCREENSHOT_DIR);
const ANSWER_TIMEOUT_MS = Number(process.env.ENCLAVE_ANSWER_TIMEOUT_S || 180) * 1000;
const WATCHDOG_MS = Number(process.env.ENCLAVE_UI_TIMEOUT_S || 900) * 1000;
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

const LAUNCH_OPTIONS = {
  executablePath: CHROMIUM,
  headless: true,
  // The test machine has no internet access; without these flags Chromium
  // stalls on background connections.
  args: [
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
};
const VIEWPORT = { width: 1280, height: 900 };
const NO_ANSWER_TEXT = 'The documents do not contain an answer to this question.';
const PASSAGE_HREF = /\/documents\/([^/?#]+)\/passage(?:[?#]|$)/;

mkdirSync(SHOT_DIR, { recursive: true });

// --------------------------------------------------------------- helpers --

const t0 = Date.now();
const elapsed = () => `${((Date.now() - t0) / 1000).toFixed(1)}s`;
const log = (msg) => console.log(`[${elapsed()}] ${msg}`);

let currentStep = 'startup';
let currentPage = null; // page to screenshot / dump on failure
const diagnostics = []; // console errors, page errors, failed requests

class CheckFailed extends Error {
  constructor(expected, saw, selector) {
    super(`expected ${expected}; saw ${saw}`);
    this.expected = expected;
    this.saw = saw;
    this.selector = selector;
  }
}

/** Fail the current step: expected vs. what was seen (selector: element to excerpt). */
function fail(expected, saw, selector) {
  throw new CheckFailed(expected, saw, selector);
}

function check(cond, expected, saw, selector) {
  if (!cond) fail(expected, saw, selector);
}

async function step(name, fn) {
  currentStep = name;
  log(`STEP ${name} ...`);
  const s = Date.now();
  const result = await fn();
  log(`  ok  ${name} (${((Date.now() - s) / 1000).toFixed(1)}s)`);
  return result;
}

const info = (msg) => log(`      ${msg}`);

const trimText = (s, n = 200) => {
  const t = String(s ?? '').replace(/\s+/g, ' ').trim();
  return t.length > n ? `${t.slice(0, n)}…` : t;
};

/** Condense HTML for the failure report: drop <style>/<svg> bodies, collapse whitespace, cap length. */
function excerptHtml(html, max = 4000) {
  let h = String(html)
    .replace(/<style[\s\S]*?<\/style>/gi, '<style>…</style>')
    .replace(/<svg[\s\S]*?<\/svg>/gi, '<svg>…</svg>')
    .replace(/\s+/g, ' ')
    .trim();
  if (h.length > max) {
    const head = Math.floor(max * 0.6);
    h = `${h.slice(0, head)}\n   … [${h.length - max} chars omitted] …\n${h.slice(h.length - (max - head))}`;
  }
  return h;
}

const slug = (s) => s.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '');

/** Record dialogs, console errors, page errors and failed requests for a page. */
function instrumentPage(page, label, dialogs) {
  page.on('dialog', (d) => {
    dialogs.push({ type: d.type(), message: d.message(), url: page.url() });
    log(`      !! ${label}: ${d.type()} dialog: ${JSON.stringify(d.message())}`);
    d.dismiss().catch(() => {});
  });
  page.on('pageerror', (e) => diagnostics.push(`${label} pageerror: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') {
      const where = m.location()?.url;
      diagnostics.push(`${label} console.error: ${m.text()}${where ? ` (${where})` : ''}`);
    }
  });
  page.on('requestfailed', (r) =>
    diagnostics.push(`${label} requestfailed: ${r.method()} ${r.url()} (${r.failure()?.errorText})`),
  );
}

/** Absolute URL for an href attribute as seen from a page. */
const absolute = (href, page) => new URL(href, page.url()).toString();

async function countOf(page, selector) {
  return page.locator(selector).count();
}

async function attr(page, selector, name) {
  const loc = page.locator(selector).first();
  if ((await loc.count()) === 0) return null;
  return loc.getAttribute(name);
}

async function expectPresent(page, selector, what) {
  const n = await countOf(page, selector);
  check(n >= 1, `${what} (${selector}) to be present`, `${n} matching elements on ${page.url()}`);
  return n;
}

/**
 * After a question is sent (JS): waits until the answer is kept and the page shows the
 * conversation with `turns` turns; fails with the error shown if the answer failed.
 */
async function answerKept(page, turns) {
  const deadline = Date.now() + ANSWER_TIMEOUT_MS;
  for (;;) {
    const state = await attr(page, '#answer', 'data-state').catch(() => null);
    if (state === 'error') {
      const msg = await page.locator('#answer-error').first().textContent().catch(() => null);
      fail('the answer to be kept', `data-state "error", #answer-error: ${JSON.stringify(trimText(msg, 500))}`, '#answer');
    }
    const n = await countOf(page, 'section.thread article.turn').catch(() => 0);
    if (n >= turns) {
      check(n === turns, `${turns} turn(s) in the conversation`, `${n} turns`, 'section.thread');
      return;
    }
    if (Date.now() > deadline) {
      fail(`the conversation to show ${turns} turn(s) within ${ANSWER_TIMEOUT_MS / 1000}s`, `${n} turns, #answer data-state=${JSON.stringify(state)}`, '#answer');
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Installed into every document of the JS context: logs #answer-text growth and #answer state. */
function streamObserverInitScript() {
  const log = [];
  Object.defineProperty(window, '__enclaveTestStreamLog', { value: log, enumerable: false });
  const start = performance.now();
  let lastLen = -1;
  let lastState;
  const sample = () => {
    const textEl = document.getElementById('answer-text');
    const answerEl = document.getElementById('answer');
    const state = answerEl ? answerEl.getAttribute('data-state') : null;
    const text = textEl ? textEl.textContent || '' : '';
    const len = text.length;
    if (len !== lastLen || state !== lastState) {
      log.push({ ms: Math.round(performance.now() - start), len, trimmed: text.trim().length, state });
      lastLen = len;
      lastState = state;
    }
  };
  new MutationObserver(sample).observe(document, {
    subtree: true,
    childList: true,
    characterData: true,
    attributes: true,
    attributeFilter: ['data-state'],
  });
  setInterval(sample, 50);
}

/** Installed into every document of the JS context: records alert/confirm/prompt calls. */
function dialogTrapInitScript() {
  const calls = [];
  Object.defineProperty(window, '__enclaveTestDialogCalls', { value: calls, enumerable: false });
  for (const name of ['alert', 'confirm', 'prompt']) {
    const orig = window[name];
    window[name] = function (...args) {
      calls.push({ name, args: args.map(String) });
      return orig.apply(this, args);
    };
  }
}

// ------------------------------------------------------------------ test --

const watchdog = setTimeout(() => {
  console.error(`FAIL: watchdog: whole run exceeded ${WATCHDOG_MS / 1000}s (during step "${currentStep}")`);
  process.exit(1);
}, WATCHDOG_MS);

let browser;

async function login(page, label) {
  await page.goto(`${BASE}/login`, { waitUntil: 'load' });
  await expectPresent(page, 'form#login-form', 'login form');
  const method = (await attr(page, 'form#login-form', 'method')) || '';
  check(method.toLowerCase() === 'post', 'form#login-form method="post"', `method=${JSON.stringify(method)}`, 'form#login-form');
  const action = (await attr(page, 'form#login-form', 'action')) || '';
  check(
    new URL(action, page.url()).pathname === '/login',
    'form#login-form action="/login"',
    `action=${JSON.stringify(action)}`,
    'form#login-form',
  );
  await expectPresent(page, 'form#login-form input#username[name="username"]', 'username input');
  await expectPresent(page, 'form#login-form input#password[name="password"][type="password"]', 'password input');
  await expectPresent(page, 'form#login-form button#login-button[type="submit"]', 'login button');

  await page.fill('#username', USER);
  await page.fill('#password', PASSWORD);
  await Promise.all([
    page.waitForURL((u) => u.pathname !== '/login', { timeout: 30_000 }).catch(() => {}),
    page.click('#login-button'),
  ]);
  await page.waitForLoadState('load');
  const u = new URL(page.url());
  check(
    u.pathname === '/',
    `${label}: after POST /login a redirect to / `,
    `landed on ${page.url()}${(await countOf(page, '#login-form')) ? ' (login form shown again: bad credentials?)' : ''}`,
  );
  await expectPresent(page, 'form#ask-form', 'ask form after login');
}

async function main() {
  // ---------------------------------------------------------- launch --
  browser = await step('launch chromium', async () => {
    const b = await chromium.launch(LAUNCH_OPTIONS);
    info(`${CHROMIUM} ${b.version()}`);
    return b;
  });

  const dialogs = [];
  const ctx = await browser.newContext({ viewport: VIEWPORT });
  ctx.setDefaultTimeout(30_000);
  ctx.setDefaultNavigationTimeout(60_000);
  await ctx.addInitScript(dialogTrapInitScript);
  await ctx.addInitScript(streamObserverInitScript);
  ctx.on('page', (p) => instrumentPage(p, 'js', dialogs));
  const page = await ctx.newPage();
  currentPage = page;
  // (the ctx 'page' handler instruments every page of this context, popups included)

  // ---------------------------------------------------- logged out --
  await step('logged-out visit to / redirects to /login?next=/', async () => {
    await page.goto(`${BASE}/`, { waitUntil: 'load' });
    const u = new URL(page.url());
    check(
      u.pathname === '/login' && u.searchParams.get('next') === '/',
      'redirect to /login?next=/',
      `final URL ${page.url()}`,
    );
  });

  // ---------------------------------------------------------- login --
  await step('log in through the login form', async () => {
    await login(page, 'js');
    const cookies = await ctx.cookies(BASE);
    const httpOnly = cookies.filter((c) => c.httpOnly);
    info(`cookies: ${cookies.map((c) => `${c.name}${c.httpOnly ? '(HttpOnly)' : ''}`).join(', ') || '(none)'}`);
    check(httpOnly.length >= 1, 'an HttpOnly session cookie after login', `cookies: ${JSON.stringify(cookies.map((c) => ({ name: c.name, httpOnly: c.httpOnly })))}`);
    const docCookie = await page.evaluate(() => document.cookie);
    for (const c of httpOnly) {
      check(!docCookie.split(/;\s*/).some((kv) => kv.startsWith(`${c.name}=`)), `HttpOnly cookie ${c.name} hidden from document.cookie`, `document.cookie=${JSON.stringify(docCookie)}`);
    }
  });

  // ------------------------------------------------------- ask page --
  await step('ask page form structure', async () => {
    await page.goto(`${BASE}/`, { waitUntil: 'load' });
    const method = ((await attr(page, 'form#ask-form', 'method')) || 'get').toLowerCase();
    check(method === 'get', 'form#ask-form method="get"', `method=${JSON.stringify(method)}`, 'form#ask-form');
    const action = (await attr(page, 'form#ask-form', 'action')) ?? '';
    check(new URL(action, page.url()).pathname === '/', 'form#ask-form action="/"', `action=${JSON.stringify(action)}`, 'form#ask-form');
    await expectPresent(page, 'form#ask-form input#q[name="q"]', 'question input');
    await expectPresent(page, 'form#ask-form select#collection[name="collection"]', 'collection select');
    await expectPresent(page, 'form#ask-form select#view[name="view"]', 'view select');
    await expectPresent(page, 'form#ask-form button#ask-button[type="submit"]', 'ask button');
    const collections = await page.locator('#collection option').evaluateAll((os) => os.map((o) => o.value));
    check(collections.length >= 1 && collections[0] === '', 'first #collection option value "" (all collections)', `option values ${JSON.stringify(collections)}`, '#collection');
    const views = await page.locator('#view option').evaluateAll((os) => os.map((o) => o.value));
    check(views.includes('answer') && views.includes('search'), '#view options "answer" and "search"', `option values ${JSON.stringify(views)}`, '#view');
    const viewDefault = await page.locator('#view').inputValue();
    check(viewDefault === 'answer', '#view to default to "answer"', `selected ${JSON.stringify(viewDefault)}`, '#view');
    info(`collections: ${JSON.stringify(collections)}`);
  });

  await step('keyboard: Tab from <body> reaches #q within 5 presses', async () => {
    await page.evaluate(() => {
      // Reset the sequential focus navigation starting point to <body>.
      if (document.activeElement && document.activeElement !== document.body) document.activeElement.blur();
      document.body.setAttribute('tabindex', '-1');
      document.body.focus();
      document.body.removeAttribute('tabindex');
    });
    const seen = [];
    for (let i = 1; i <= 5; i++) {
      await page.keyboard.press('Tab');
      const id = await page.evaluate(() => {
        const a = document.activeElement;
        return a ? a.id || `<${a.tagName.toLowerCase()}${a.getAttribute('href') ? ` href=${a.getAttribute('href')}` : ''}>` : null;
      });
      seen.push(id);
      if (id === 'q') {
        info(`#q focused after ${i} Tab press(es): ${JSON.stringify(seen)}`);
        return;
      }
    }
    fail('#q to receive focus within 5 Tab presses', `focus sequence ${JSON.stringify(seen)}`, 'form#ask-form');
  });

  // --------------------------------------------- streamed answer (JS) --
  let firstCitationHref;
  await step('ask a question (JS) and watch the answer stream', async () => {
    await page.goto(`${BASE}/`, { waitUntil: 'load' });
    await page.fill('#q', QUESTION);
    await page.selectOption('#view', 'answer');
    await page.selectOption('#collection', '');
    info(`question: ${JSON.stringify(QUESTION)}`);
    await page.click('#ask-button');
    await answerKept(page, 1);

    const streamLog = (await page.evaluate(() => window.__enclaveTestStreamLog || null)) || [];
    const doneIdx = streamLog.findIndex((r) => r.state === 'done');
    const before = doneIdx === -1 ? streamLog : streamLog.slice(0, doneIdx);
    const lengths = [...new Set(before.filter((r) => r.trimmed > 0).map((r) => r.len))];
    const sawStreaming = before.some((r) => r.state === 'streaming');
    const compact = streamLog.map((r) => `${r.ms}ms:${r.state}:${r.len}`);
    info(`stream log (${streamLog.length} samples): ${compact.length > 16 ? [...compact.slice(0, 8), '…', ...compact.slice(-6)].join(' ') : compact.join(' ')}`);
    check(sawStreaming, '#answer data-state "streaming" while tokens arrive', `states seen before done: ${JSON.stringify([...new Set(before.map((r) => r.state))])}`, '#answer');
    check(
      lengths.length >= 2,
      'at least 2 distinct non-empty #answer-text lengths before data-state "done" (incremental streaming)',
      `distinct non-empty lengths before done: ${JSON.stringify(lengths)}`,
      '#answer',
    );
    info(`incremental: ${lengths.length} distinct non-empty lengths before done`);

    // The answer is now the conversation's first turn.
    const turn = 'article.turn#turn-1';
    check(new URL(page.url()).searchParams.get('c'), 'the page to show the conversation (/?c=ID)', page.url());
    const answerText = ((await page.locator(`${turn} .answer-text`).first().textContent()) || '').trim();
    info(`answer: ${JSON.stringify(trimText(answerText, 300))}`);
    check(answerText.length > 0, 'non-empty answer text in the first turn', 'empty answer text', turn);
    check(answerText !== NO_ANSWER_TEXT, 'an answer (the question is answerable from the corpus)', `"${NO_ANSWER_TEXT}"`, turn);

    const nCitations = await countOf(page, `${turn} ol.citations li a.citation`);
    const nItems = await countOf(page, `${turn} ol.citations li`);
    check(nCitations >= 1, 'at least one ol.citations li a.citation', `${nCitations} a.citation in ${nItems} ol.citations li`, turn);
    const citations = await page.locator(`${turn} ol.citations li a.citation`).evaluateAll((as) =>
      as.map((a) => ({ href: a.getAttribute('href'), text: (a.textContent || '').trim() })),
    );
    for (const c of citations) {
      check(PASSAGE_HREF.test(c.href || ''), 'a.citation href like /documents/{id}/passage?...', `href=${JSON.stringify(c.href)}`, 'ol#citations');
      check(c.text.length > 0, 'a.citation text (title, pages)', 'empty link text', 'ol#citations');
    }
    info(`citations: ${citations.map((c) => `${JSON.stringify(c.text)} -> ${c.href}`).join(' | ')}`);

    const markers = await page.locator(`${turn} .answer-text a.citation-marker`).evaluateAll((as) =>
      as.map((a) => ({ href: a.getAttribute('href'), text: (a.textContent || '').trim() })),
    );
    for (const m of markers) {
      check(PASSAGE_HREF.test(m.href || ''), 'a.citation-marker href like /documents/{id}/passage?start=..&end=..', `href=${JSON.stringify(m.href)}`, '#answer-text');
      check(/^\[\d+\]$/.test(m.text), 'a.citation-marker text like [n]', `text=${JSON.stringify(m.text)}`, '#answer-text');
    }
    if (markers.length === 0) info('WARNING: no inline a.citation-marker links in #answer-text (citations list is present)');
    else info(`${markers.length} inline citation marker link(s)`);

    firstCitationHref = citations[0].href;
    await page.screenshot({ path: path.join(SHOT_DIR, 'ask.png'), fullPage: true });
    info(`screenshot ${path.join(SHOT_DIR, 'ask.png')}`);
  });

  // --------------------------------------------------- passage view --
  await step('open the first citation: passage view', async () => {
    const link = page.locator('article.turn#turn-1 ol.citations li a.citation').first();
    const target = await link.getAttribute('target');
    let pv = page;
    if (target && target !== '_self') {
      [pv] = await Promise.all([page.waitForEvent('popup'), link.click()]);
      currentPage = pv;
      await pv.waitForLoadState('load');
    } else {
      await Promise.all([page.waitForURL((u) => PASSAGE_HREF.test(u.pathname + u.search), { timeout: 60_000 }), link.click()]);
      await page.waitForLoadState('load');
    }
    const docId = PASSAGE_HREF.exec(firstCitationHref)[1];
    info(`passage URL ${pv.url()}`);
    check(PASSAGE_HREF.test(new URL(pv.url()).pathname + new URL(pv.url()).search), 'passage view URL /documents/{id}/passage?...', pv.url());

    const title = ((await pv.locator('h1#document-title').first().textContent().catch(() => null)) || '').trim();
    check(title.length > 0, 'non-empty h1#document-title', `${JSON.stringify(title)} (${await countOf(pv, 'h1#document-title')} h1#document-title)`);
    info(`document title: ${JSON.stringify(title)}`);

    const sections = await pv.locator('section.page').evaluateAll((ss) =>
      ss.map((s) => ({
        page: s.getAttribute('data-page'),
        h2: (s.querySelector('h2')?.textContent || '').trim(),
        pre: !!s.querySelector('pre.page-text'),
        whiteSpace: s.querySelector('pre.page-text') ? getComputedStyle(s.querySelector('pre.page-text')).whiteSpace : null,
      })),
    );
    check(sections.length >= 1, 'at least one section.page[data-page]', '0 section.page');
    for (const s of sections) {
      check(/^\d+$/.test(s.page || ''), 'section.page with numeric data-page', `data-page=${JSON.stringify(s.page)}`, 'section.page');
      check(s.h2 === `Page ${s.page}`, `<h2>Page ${s.page}</h2> in section.page[data-page="${s.page}"]`, `h2 ${JSON.stringify(s.h2)}`, `section.page[data-page="${s.page}"]`);
      check(s.pre, `pre.page-text in section.page[data-page="${s.page}"]`, 'no pre.page-text', `section.page[data-page="${s.page}"]`);
      check(
        ['pre', 'pre-wrap', 'break-spaces'].includes(s.whiteSpace),
        'pre.page-text to preserve whitespace (white-space pre / pre-wrap / break-spaces)',
        `white-space: ${s.whiteSpace}`,
        `section.page[data-page="${s.page}"]`,
      );
    }
    info(`pages shown: ${sections.map((s) => s.page).join(', ')}`);

    const nMarks = await countOf(pv, 'mark.cited');
    check(nMarks >= 1, 'at least one mark.cited', `${nMarks} mark.cited`, 'section.page');
    const firstMarkId = await pv.locator('mark.cited').first().getAttribute('id');
    check(firstMarkId === 'cited', 'first mark.cited to have id="cited"', `id=${JSON.stringify(firstMarkId)}`, 'mark.cited');
    const inPre = await countOf(pv, 'pre.page-text mark.cited');
    check(inPre === nMarks, 'every mark.cited inside a pre.page-text', `${inPre} of ${nMarks}`, 'section.page');
    const markText = ((await pv.locator('mark.cited').allTextContents()).join(' … ')).trim();
    check(markText.length > 0, 'mark.cited with non-empty text', 'empty mark.cited text', 'mark.cited');
    check(await pv.locator('mark.cited').first().isVisible(), 'mark.cited to be visible', 'not visible', 'mark.cited');
    info(`cited text: ${JSON.stringify(trimText(markText, 200))}`);

    // Scrolled into view (allow a moment for a scrollIntoView on load).
    let inView = false;
    for (let i = 0; i < 20 && !inView; i++) {
      inView = await pv.evaluate(() => {
        const r = document.getElementById('cited')?.getBoundingClientRect();
        return !!r && r.bottom > 0 && r.top < window.innerHeight;
      });
      if (!inView) await pv.waitForTimeout(100);
    }
    const rect = await pv.evaluate(() => {
      const r = document.getElementById('cited')?.getBoundingClientRect();
      return r ? { top: Math.round(r.top), bottom: Math.round(r.bottom), scrollY: Math.round(window.scrollY), innerHeight: window.innerHeight } : null;
    });
    check(inView, '#cited scrolled into the viewport', `bounding rect ${JSON.stringify(rect)}`, 'mark.cited');

    const orig = await attr(pv, 'a#original', 'href');
    check(orig !== null, 'a#original link to the original file', 'no a#original');
    check(orig.replace(/[?#].*$/, '').endsWith('/file'), 'a#original href ending with "/file"', `href=${JSON.stringify(orig)}`, 'a#original');
    const origUrl = absolute(orig, pv);
    check(
      new URL(origUrl).pathname === `/documents/${docId}/file`,
      `a#original href /documents/${docId}/file (same document as the citation)`,
      `href=${JSON.stringify(orig)}`,
      'a#original',
    );
    const resp = await pv.request.get(origUrl, { maxRedirects: 0 });
    const body = await resp.body();
    check(resp.status() === 200, `GET ${orig} -> 200 (logged in)`, `status ${resp.status()} content-type ${resp.headers()['content-type']}`);
    check(body.length > 0, `GET ${orig} -> non-empty body`, '0 bytes');
    info(`original file: 200, ${body.length} bytes, ${resp.headers()['content-type']}`);

    // Without the session cookie the file must not be served.
    const anon = await pwRequest.newContext();
    try {
      const r = await anon.get(origUrl, { maxRedirects: 0 });
      check(r.status() !== 200, `GET ${orig} without a session -> not 200 (login required)`, `status ${r.status()}`);
      info(`original file without session: ${r.status()}`);
    } finally {
      await anon.dispose();
    }

    await pv.screenshot({ path: path.join(SHOT_DIR, 'passage.png') });
    info(`screenshot ${path.join(SHOT_DIR, 'passage.png')}`);
    if (pv !== page) {
      await pv.close();
      currentPage = page;
    }
  });

  // ------------------------------------------------- search / XSS --
  // ------------------------------------------------ conversation --
  let threadUrl;
  await step('two follow-ups in the conversation (JS): each rewritten and searched as such', async () => {
    await page.goBack({ waitUntil: 'load' });
    check(new URL(page.url()).searchParams.get('c'), 'back on the conversation (/?c=ID)', page.url());
    threadUrl = page.url();
    for (const [i, followUp] of FOLLOW_UPS.entries()) {
      const position = i + 2;
      const placeholder = await attr(page, '#q', 'placeholder');
      check(/follow-up/i.test(placeholder || ''), '#q to offer a follow-up question', `placeholder=${JSON.stringify(placeholder)}`, '#q');
      await page.fill('#q', followUp);
      await page.click('#ask-button');
      await answerKept(page, position);
      const turn = `article.turn#turn-${position}`;
      const asked = ((await page.locator(`${turn} .turn-question`).textContent()) || '').trim();
      check(asked === followUp, `turn ${position} to show the follow-up`, JSON.stringify(asked), turn);
      const standalone = ((await page.locator(`${turn} details.how q.standalone`).textContent().catch(() => '')) || '').trim();
      info(`turn ${position}: ${JSON.stringify(followUp)} searched as ${JSON.stringify(standalone)}`);
      check(standalone.length > 0 && standalone !== followUp, `turn ${position}: the rewritten question under "How this was found"`, JSON.stringify(standalone), turn);
      const retrieved = await countOf(page, `${turn} details.how ol.retrieved li a`);
      check(retrieved >= 1, `turn ${position}: the passages retrieved for it`, `${retrieved}`, turn);
    }
    await page.screenshot({ path: path.join(SHOT_DIR, 'conversation.png'), fullPage: true });
  });

  await step('feedback: thumbs down with a comment and the right source on the second answer', async () => {
    const turn = 'article.turn#turn-2';
    await page.locator(`${turn} details.more summary`).click();
    await page.fill(`${turn} textarea[name="comment"]`, 'names no register');
    const picks = await page.locator(`${turn} select[name="right_source"] option`).evaluateAll((os) => os.map((o) => o.value));
    check(picks.length >= 2 && picks[0] === '', 'the right-source pick to list the given passages after "none"', JSON.stringify(picks), turn);
    await page.selectOption(`${turn} select[name="right_source"]`, picks[1]);
    info(`right source picked: ${picks[1]}`);
    await Promise.all([
      page.waitForURL((u) => u.hash === '#turn-2', { timeout: 30_000, waitUntil: 'load' }),
      page.click(`${turn} button.thumb[value="no"]`),
    ]);
    const pressed = await attr(page, `${turn} button.thumb[value="no"]`, 'aria-pressed');
    check(pressed === 'true', 'the thumbs-down button pressed after the verdict', `aria-pressed=${JSON.stringify(pressed)}`, turn);
    const comment = await page.locator(`${turn} textarea[name="comment"]`).inputValue();
    check(comment === 'names no register', 'the comment kept', JSON.stringify(comment), turn);
  });

  await step('the conversation is listed, found and exported with every citation', async () => {
    const id = new URL(threadUrl).searchParams.get('c');
    await page.goto(`${BASE}/conversations?q=${encodeURIComponent(FOLLOW_UPS[0])}`, { waitUntil: 'load' });
    const hrefs = await page.locator('a.conversation').evaluateAll((as) => as.map((a) => a.getAttribute('href')));
    check(hrefs.includes(`/?c=${id}`), 'the conversation found by its follow-up on /conversations', JSON.stringify(hrefs), 'table.conversations');
    await page.goto(threadUrl, { waitUntil: 'load' });
    const cited = await page.locator('section.thread ol.citations a.citation').evaluateAll((as) => as.map((a) => a.getAttribute('href')));
    check(cited.length >= 1, 'citations in the conversation', `${cited.length}`, 'section.thread');
    const res = await page.request.get(`${BASE}/conversations/${id}/export`);
    check(res.status() === 200, 'the Markdown export', `HTTP ${res.status()}`);
    const markdown = await res.text();
    for (const href of cited) {
      check(markdown.includes(href), `the export to link ${href}`, trimText(markdown, 400));
    }
    for (const q of [QUESTION, ...FOLLOW_UPS]) {
      check(markdown.includes(q), `the export to hold ${JSON.stringify(q)}`, trimText(markdown, 400));
    }
    info(`export: ${markdown.length} characters, ${cited.length} citation links`);
  });

  await step('search view escapes stored HTML/script (no XSS)', async () => {
    dialogs.length = 0;
    const url = `${BASE}/?q=${encodeURIComponent(XSS_QUERY)}&view=search`;
    info(`GET ${url}`);
    await page.goto(url, { waitUntil: 'load' });
    await page.waitForTimeout(500); // give any (unwanted) deferred script a chance to run

    const passages = await page.locator('article.passage').evaluateAll((as) =>
      as.map((a) => ({
        title: (a.querySelector('a.passage-title')?.textContent || '').trim(),
        href: a.querySelector('a.passage-title')?.getAttribute('href') ?? null,
        scores: !!a.querySelector('p.scores'),
        text: a.querySelector('blockquote.passage-text')?.textContent ?? null,
      })),
    );
    check(passages.length >= 1, `at least one article.passage for ${JSON.stringify(XSS_QUERY)}`, '0 article.passage');
    for (const p of passages) {
      check(p.href !== null && PASSAGE_HREF.test(p.href), 'a.passage-title href like /documents/{id}/passage?...', `href=${JSON.stringify(p.href)}`, 'article.passage');
      check(p.scores, 'p.scores in each article.passage', 'missing p.scores', 'article.passage');
      check(p.text !== null, 'blockquote.passage-text in each article.passage', 'missing blockquote.passage-text', 'article.passage');
    }
    info(`${passages.length} passage(s): ${passages.map((p) => JSON.stringify(trimText(p.title, 60))).join(', ')}`);

    const probe = await page.evaluate(() => ({
      xss: typeof window.__enclaveXss,
      scriptsInPassages: document.querySelectorAll('.passage-text script').length,
      elementsInPassages: [...document.querySelectorAll('.passage-text *')].map((e) => e.tagName.toLowerCase()),
      dialogCalls: window.__enclaveTestDialogCalls || [],
      // executable scripts only (a JSON data block quoting the text would be harmless)
      inlineScriptsMentioningXss: [...document.querySelectorAll('script')]
        .filter((s) => ['', 'text/javascript', 'application/javascript', 'module'].includes((s.getAttribute('type') || '').trim().toLowerCase()))
        .filter((s) => (s.textContent || '').includes('__enclaveXss')).length,
    }));
    check(dialogs.length === 0 && probe.dialogCalls.length === 0, 'no alert/confirm/prompt dialog', `dialogs ${JSON.stringify(dialogs)} calls ${JSON.stringify(probe.dialogCalls)}`, 'article.passage');
    check(probe.xss === 'undefined', 'window.__enclaveXss to be undefined', `typeof window.__enclaveXss === ${JSON.stringify(probe.xss)}`, 'article.passage');
    check(probe.scriptsInPassages === 0, "document.querySelectorAll('.passage-text script').length === 0", `${probe.scriptsInPassages}`, 'article.passage');
    check(probe.inlineScriptsMentioningXss === 0, 'no executable <script> element anywhere containing "__enclaveXss"', `${probe.inlineScriptsMentioningXss}`, 'article.passage');
    const withScript = passages.filter((p) => (p.text || '').includes('<script>'));
    check(
      withScript.length >= 1,
      'some .passage-text textContent containing the literal text "<script>" (escaped, shown as text)',
      `passage texts: ${JSON.stringify(passages.map((p) => trimText(p.text, 120)))}`,
      'article.passage',
    );
    info(`escaped markup shown: ${JSON.stringify(trimText(withScript[0].text, 160))}`);

    if (probe.elementsInPassages.length) info(`elements inside .passage-text: ${JSON.stringify([...new Set(probe.elementsInPassages)])}`);

    await page.screenshot({ path: path.join(SHOT_DIR, 'search.png'), fullPage: true });
    info(`screenshot ${path.join(SHOT_DIR, 'search.png')}`);
  });

  // ------------------------------------------------------ no-JS path --
  await step('no-JavaScript context: log in and get a server-rendered answer', async () => {
    const nojsDialogs = [];
    const ctx2 = await browser.newContext({ viewport: VIEWPORT, javaScriptEnabled: false });
    ctx2.setDefaultTimeout(30_000);
    ctx2.setDefaultNavigationTimeout(60_000);
    const p2 = await ctx2.newPage();
    instrumentPage(p2, 'nojs', nojsDialogs);
    currentPage = p2;
    await login(p2, 'no-js');
    info('logged in without JavaScript');

    await p2.fill('#q', QUESTION);
    await p2.selectOption('#view', 'answer');
    await Promise.all([
      p2.waitForURL((u) => u.pathname === '/' && u.searchParams.get('c'), {
        timeout: ANSWER_TIMEOUT_MS,
        waitUntil: 'load',
      }),
      p2.click('#ask-button', { noWaitAfter: true }),
    ]);
    info(`submitted, then shown the conversation: ${p2.url()}`);
    const errors = await countOf(p2, 'p.error[role="alert"]');
    check(errors === 0, 'no error (no JS)', `${errors} p.error: ${JSON.stringify(trimText(await p2.locator('p.error[role="alert"]').first().textContent().catch(() => ''), 500))}`);
    const text = ((await p2.locator('article.turn#turn-1 .answer-text').first().textContent().catch(() => '')) || '').trim();
    info(`answer: ${JSON.stringify(trimText(text, 300))}`);
    const n = await countOf(p2, 'article.turn#turn-1 a.citation');
    check(n >= 1, 'at least one a.citation in the kept answer (no JS)', `${n} a.citation; answer ${JSON.stringify(trimText(text))}`, 'section.thread');
    info(`${n} citation(s)`);
    await ctx2.close();
    currentPage = page;
  });

  await ctx.close();
}

// ------------------------------------------------------------ runner --

async function reportFailure(err) {
  console.log('');
  console.log(`FAIL in step "${currentStep}"`);
  if (err instanceof CheckFailed) {
    console.log(`  expected: ${err.expected}`);
    console.log(`  saw:      ${err.saw}`);
  } else {
    console.log(`  error:    ${String(err && err.stack ? err.stack : err).replace(/\x1b\[[0-9;]*m/g, '')}`);
  }
  const page = currentPage;
  if (page && !page.isClosed()) {
    console.log(`  page URL: ${page.url()}`);
    if (err instanceof CheckFailed && err.selector) {
      const html = await page
        .locator(err.selector)
        .first()
        .evaluate((e) => e.outerHTML, null, { timeout: 2000 })
        .catch(() => null);
      if (html) console.log(`  ${err.selector} outerHTML:\n   ${excerptHtml(html, 2500)}`);
    }
    const content = await page.content().catch((e) => `(page.content() failed: ${e.message})`);
    console.log(`  page.content() excerpt:\n   ${excerptHtml(content)}`);
    const shot = path.join(SHOT_DIR, `failure-${slug(currentStep)}.png`);
    await page
      .screenshot({ path: shot, fullPage: true, timeout: 15_000 })
      .then(() => console.log(`  screenshot: ${shot}`))
      .catch((e) => console.log(`  (failure screenshot failed: ${e.message})`));
  }
  if (diagnostics.length) {
    console.log('  browser diagnostics:');
    for (const d of diagnostics.slice(-20)) console.log(`   - ${d}`);
  }
}

try {
  await main();
  log('PASS: all web UI checks passed');
  if (diagnostics.length) {
    log('(browser diagnostics, not failures:)');
    for (const d of diagnostics.slice(-20)) log(`   - ${d}`);
  }
  clearTimeout(watchdog);
  await browser?.close().catch(() => {});
  process.exit(0);
} catch (err) {
  await reportFailure(err).catch((e) => console.log(`  (failure report failed: ${e.message})`));
  clearTimeout(watchdog);
  await browser?.close().catch(() => {});
  process.exit(1);
}
