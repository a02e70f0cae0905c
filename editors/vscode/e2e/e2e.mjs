// End to end in a real VS Code (code-server, in headless chromium through Playwright):
// install nearline.vsix, open a copy of examples/sample_project, wait for the status bar to say
// the model is ready, then the cases (each recorded in result.json's "cases", pass or fail,
// so one failing case does not hide the others):
//   ghost:    type "." at the end of a half-written line, ghost text appears, Tab accepts it;
//             "Nearline: Show prompt for cursor"; "Nearline: Toggle" off and on
//   markdown: in a Markdown file (off by default) typing shows no ghost text and the status
//             bar says "off for this language"
//   manual:   with nearline.completion.trigger "manual", typing shows nothing; Alt+\ (Trigger
//             Inline Suggestion) shows a suggestion
//   notebook: in a Python notebook, a completion in the second cell uses a name that only the
//             first cell defines
// $E2E_CASES (comma-separated) runs a subset. Screenshots go to $E2E_OUT.
//
// Needs (see README "End-to-end"): CODE_SERVER (code-server's bin or out/node/entry.js),
// CODE_SERVER_NODE (the Node it runs on, v24 for code-server 4.1xx), CHROMIUM
// (/usr/bin/chromium), NEARLINE_CMD (JSON list, the server command), and nearline.vsix built.
// Every wait is bounded; the script exits non-zero with the step that failed.

import { spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const extDir = resolve(here, '..');
const repo = resolve(extDir, '..', '..');

const env = process.env;
const CODE_SERVER = env.CODE_SERVER;
const NODE = env.CODE_SERVER_NODE || 'node';
const CHROMIUM = env.CHROMIUM || '/usr/bin/chromium';
const NEARLINE_CMD = JSON.parse(env.NEARLINE_CMD || '["nearline", "serve"]');
const MODEL = env.NEARLINE_MODEL || 'smollm2-135m-instruct-q4_1';
const VSIX = env.VSIX || join(extDir, 'nearline.vsix');
const OUT = resolve(env.E2E_OUT || join(repo, 'bench-results', 'vscode-e2e'));
const TOTAL_TIMEOUT_MS = Number(env.E2E_TIMEOUT_MS || 420_000);
const CASES = (env.E2E_CASES || 'ghost,markdown,manual,notebook').split(',').map((c) => c.trim()).filter(Boolean);
// How long "nothing appears" is watched for: longer than a suggestion takes here once warm.
const QUIET_MS = Number(env.E2E_QUIET_MS || 8000);

if (!CODE_SERVER) throw new Error('set CODE_SERVER to code-server (its bin, or out/node/entry.js)');
if (!existsSync(VSIX)) throw new Error(`no ${VSIX}: run bash ci.sh first`);
mkdirSync(OUT, { recursive: true });
// This run's screenshots only.
for (const f of readdirSync(OUT)) if (f.endsWith('.png') || f === 'result.json') rmSync(join(OUT, f));

const t0 = Date.now();
const log = (...a) => console.log(`[${((Date.now() - t0) / 1000).toFixed(1)}s]`, ...a);
const result = { steps: [], cases: {} };
const step = (name, data = {}) => {
  result.steps.push({ name, at_s: (Date.now() - t0) / 1000, ...data });
  log(name, Object.keys(data).length ? JSON.stringify(data) : '');
};

function freePort() {
  return new Promise((res, rej) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
    s.on('error', rej);
  });
}

function run(args, opts = {}) {
  const entry = CODE_SERVER.endsWith('.js') ? [NODE, CODE_SERVER] : [CODE_SERVER];
  return spawn(entry[0], [...entry.slice(1), ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: childEnv, ...opts });
}

async function runToEnd(args, opts) {
  const p = run(args, opts);
  let out = '';
  p.stdout.on('data', (d) => (out += d));
  p.stderr.on('data', (d) => (out += d));
  const code = await new Promise((r) => p.on('exit', r));
  if (code !== 0) throw new Error(`code-server ${args.join(' ')} exited ${code}:\n${out}`);
  return out;
}

const work = mkdtempSync(join(tmpdir(), 'nearline-vscode-e2e-'));
const project = join(work, 'sample_project');
const userData = join(work, 'user-data');
const extensions = join(work, 'extensions');
const partialLine = '    return sum(item';
// The notebook: the first cell defines a name found nowhere else; the second starts using it.
const NOTEBOOK_NAME = 'compute_shipping_cost';
const notebook = {
  cells: [
    {
      cell_type: 'code',
      execution_count: null,
      metadata: {},
      outputs: [],
      source: [`def ${NOTEBOOK_NAME}(weight_kg: float, rate_per_kg: float) -> float:\n`, '    return weight_kg * rate_per_kg\n'],
    },
    { cell_type: 'code', execution_count: null, metadata: {}, outputs: [], source: ['total = compute_'] },
  ],
  metadata: {
    kernelspec: { display_name: 'Python 3', language: 'python', name: 'python3' },
    language_info: { name: 'python' },
  },
  nbformat: 4,
  nbformat_minor: 5,
};
// code-server and chromium write under $XDG_CONFIG_HOME: keep it in the scratch directory.
const childEnv = { ...env, XDG_CONFIG_HOME: join(work, 'xdg-config') };

let server;
let browser;
const watchdog = setTimeout(() => {
  console.error(`e2e: gave up after ${TOTAL_TIMEOUT_MS} ms`);
  cleanup(2);
}, TOTAL_TIMEOUT_MS);

function cleanup(code) {
  clearTimeout(watchdog);
  result.total_s = (Date.now() - t0) / 1000;
  result.ok = code === 0;
  writeFileSync(join(OUT, 'result.json'), JSON.stringify(result, null, 2));
  const done = () => {
    if (server && server.exitCode === null) {
      try {
        process.kill(-server.pid, 'SIGTERM');
      } catch {
        server.kill('SIGTERM');
      }
    }
    if (!env.E2E_KEEP) rmSync(work, { recursive: true, force: true });
    process.exit(code);
  };
  if (browser) browser.close().then(done, done);
  else done();
}

const baseSettings = () => ({
  'nearline.server.command': NEARLINE_CMD,
  'nearline.model.id': MODEL,
  'nearline.model.threads': 1,
  'nearline.completion.debounceMs': 0,
  'nearline.completion.timeoutMs': 30000,
  'nearline.completion.maxTokens': 16,
  'nearline.context.budgetTokens': 512,
});

function writeWorkspaceSettings(extra) {
  writeFileSync(join(project, '.vscode', 'settings.json'), JSON.stringify({ ...baseSettings(), ...extra }, null, 2));
}

const clean = (t) => t.replace(/\u00a0/g, ' ');

async function quickOpen(page, name) {
  await page.keyboard.press('Escape');
  await page.keyboard.press('Control+P');
  await page.waitForSelector('.quick-input-widget input', { timeout: 20_000 });
  await page.keyboard.type(name);
  // The row for `name`, not a stale row of the recently-opened list shown before filtering.
  await page.locator('.quick-input-list .monaco-list-row', { hasText: name }).first().waitFor({ timeout: 20_000 });
  await page.waitForTimeout(300);
  await page.keyboard.press('Enter');
}

async function command(page, title) {
  await page.keyboard.press('F1');
  await page.waitForSelector('.quick-input-widget input', { timeout: 10_000 });
  await page.keyboard.type(title);
  await page.locator('.quick-input-list .monaco-list-row', { hasText: title.replace(/^.*: /, '') }).first().waitFor({ timeout: 10_000 });
  await page.waitForTimeout(300);
  await page.keyboard.press('Enter');
}

/** The visible ghost text in the focused editor ('' if none). */
async function ghostText(page) {
  const ghost = page.locator('.monaco-editor.focused .ghost-text-decoration, .monaco-editor.focused .ghost-text');
  return clean((await ghost.allInnerTexts()).join('')).trim();
}

async function waitGhost(page, timeoutMs) {
  const by = Date.now() + timeoutMs;
  for (;;) {
    const t = await ghostText(page);
    if (t) return t;
    if (Date.now() > by) throw new Error(`no ghost text within ${timeoutMs} ms`);
    await page.waitForTimeout(200);
  }
}

/** Ghost text must not appear for `ms`. */
async function expectNoGhost(page, ms) {
  const by = Date.now() + ms;
  while (Date.now() < by) {
    const t = await ghostText(page);
    if (t) throw new Error(`ghost text appeared: ${JSON.stringify(t)}`);
    await page.waitForTimeout(200);
  }
}

/** The Nearline output channel's log file (VS Code persists output channels under logs/). */
function nearlineLog() {
  const found = [];
  const walk = (d) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.isDirectory()) walk(join(d, e.name));
      else if (e.name.endsWith('-Nearline.log')) found.push(join(d, e.name));
    }
  };
  walk(join(userData, 'logs'));
  return found.length ? readFileSync(found[found.length - 1], 'utf8') : '';
}

/** nearline.status's counters, through "Nearline: Show status" (which logs its JSON). */
async function serverStats(page) {
  const before = nearlineLog().split('nearline.status: ').length;
  await command(page, 'Nearline: Show status');
  const by = Date.now() + 10_000;
  for (;;) {
    const parts = nearlineLog().split('nearline.status: ');
    if (parts.length > before) {
      const tail = parts[parts.length - 1];
      const end = tail.indexOf('\n}');
      if (end >= 0) {
        await page.keyboard.press('Escape');
        return JSON.parse(tail.slice(0, end + 2)).stats || {};
      }
    }
    if (Date.now() > by) throw new Error('Show status: no nearline.status in the Nearline log');
    await page.waitForTimeout(250);
  }
}

async function statusText(item) {
  return clean(await item.innerText()).trim();
}

async function waitStatus(item, what, pred, timeoutMs) {
  const by = Date.now() + timeoutMs;
  for (;;) {
    const text = await statusText(item);
    const html = await item.innerHTML();
    if (pred(text, html)) return text;
    if (Date.now() > by) throw new Error(`status bar never showed ${what}; last: ${text}`);
    await item.page().waitForTimeout(200);
  }
}

async function main() {
  // The workspace: the sample project, a half-typed file, and settings for a fast small model.
  cpSync(join(repo, 'examples', 'sample_project'), project, { recursive: true });
  writeFileSync(
    join(project, 'inventory', 'partial.py'),
    `from inventory.models import Item, Warehouse\n\n\ndef total_quantity(warehouse: Warehouse) -> int:\n${partialLine}\n`,
  );
  writeFileSync(
    join(project, 'inventory', 'manual.py'),
    `from inventory.models import Item, Warehouse\n\n\ndef item_names(warehouse: Warehouse) -> list[str]:\n    return [item`,
  );
  writeFileSync(join(project, 'NOTES.md'), '# Notes\n\nThe warehouse keeps');
  writeFileSync(join(project, 'shipping.ipynb'), JSON.stringify(notebook, null, 1));
  mkdirSync(join(project, '.vscode'));
  writeWorkspaceSettings({});
  mkdirSync(join(userData, 'User'), { recursive: true });
  writeFileSync(
    join(userData, 'User', 'settings.json'),
    JSON.stringify({
      'workbench.startupEditor': 'none',
      'security.workspace.trust.enabled': false,
      'editor.inlineSuggest.enabled': true,
      'editor.quickSuggestions': { other: false, comments: false, strings: false },
      'editor.suggestOnTriggerCharacters': false,
      'telemetry.telemetryLevel': 'off',
      'workbench.tips.enabled': false,
      'extensions.ignoreRecommendations': true,
      'python.languageServer': 'None',
    }),
  );

  const installed = await runToEnd(['--user-data-dir', userData, '--extensions-dir', extensions, '--install-extension', VSIX]);
  step('installed', { output: installed.trim().split('\n').pop() });

  const port = await freePort();
  const config = join(work, 'config.yaml');
  writeFileSync(config, `bind-addr: 127.0.0.1:${port}\nauth: none\ncert: false\n`);
  server = run(
    [
      '--config', config,
      '--user-data-dir', userData,
      '--extensions-dir', extensions,
      '--disable-telemetry',
      '--disable-update-check',
      '--disable-workspace-trust',
      '--disable-getting-started-override',
      project,
    ],
    { detached: true },
  );
  let serverLog = '';
  server.stdout.on('data', (d) => (serverLog += d));
  server.stderr.on('data', (d) => (serverLog += d));
  const deadline = Date.now() + 30_000;
  while (!serverLog.includes('HTTP server listening')) {
    if (Date.now() > deadline || server.exitCode !== null) throw new Error(`code-server did not start:\n${serverLog}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  step('code-server listening', { port });

  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
    env: childEnv,
  });
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  page.on('pageerror', (e) => log('page error:', e.message));
  await page.goto(`http://127.0.0.1:${port}/?folder=${encodeURIComponent(project)}`);
  await page.waitForSelector('.monaco-workbench', { timeout: 60_000 });
  step('workbench loaded');

  // Open the half-typed file with Quick Open.
  await quickOpen(page, 'partial.py');
  await page.waitForSelector('.monaco-editor .view-lines', { timeout: 30_000 });
  step('file opened');

  // The status bar item appears when the extension activates; wait for "ready".
  const item = page.locator('[id="nearline.nearline.status"], .statusbar-item:has-text("Nearline")').first();
  await item.waitFor({ timeout: 60_000 });
  const readyBy = Date.now() + 90_000;
  let label = '';
  for (;;) {
    label = (await item.getAttribute('aria-label')) || (await item.innerText());
    const html = await item.innerHTML();
    if (html.includes('codicon-check')) break;
    if (html.includes('codicon-error')) throw new Error(`status bar shows an error: ${label}`);
    if (Date.now() > readyBy) throw new Error(`status bar never showed ready; last: ${label}`);
    await page.waitForTimeout(250);
  }
  step('status bar ready', { label });
  await page.screenshot({ path: join(OUT, '1-ready.png') });

  const cases = {
    ghost: async () => {
      // Cursor to the end of the partial line (line 5), then type "." to trigger inline suggestions.
      await page.click('.monaco-editor .view-lines');
      await page.keyboard.press('Control+G');
      await page.waitForSelector('.quick-input-widget input', { timeout: 10_000 });
      await page.keyboard.type('5');
      await page.keyboard.press('Enter');
      await page.keyboard.press('End');
      // "generating" in the status bar while the model runs (nearline/status), if caught.
      let sawGenerating = false;
      const watch = setInterval(() => {
        statusText(item).then(
          (t) => (sawGenerating ||= t.includes('generating')),
          () => undefined,
        );
      }, 50);
      await page.keyboard.type('.');
      let ghost;
      try {
        ghost = await waitGhost(page, 60_000);
      } finally {
        clearInterval(watch);
      }
      step('ghost text shown', { ghostText: ghost, sawGenerating });
      await page.screenshot({ path: join(OUT, '2-ghost-text.png') });

      await page.keyboard.press('Tab');
      await page.waitForTimeout(500);
      const lines = await page.locator('.monaco-editor .view-line').allInnerTexts();
      const accepted = lines.map(clean).find((l) => l.startsWith(`${partialLine}.`)) || '';
      step('accepted', { line: accepted });
      if (accepted.length <= `${partialLine}.`.length) throw new Error(`Tab did not insert the suggestion: ${JSON.stringify(lines)}`);
      await page.screenshot({ path: join(OUT, '3-accepted.png') });

      // Nearline: Show prompt for cursor → an untitled document with the prompt.
      await command(page, 'Nearline: Show prompt for cursor');
      const promptDoc = page.locator('.monaco-editor .view-line:has-text("Nearline prompt for")').first();
      await promptDoc.waitFor({ timeout: 30_000 });
      step('prompt document', { header: clean(await promptDoc.innerText()) });
      await page.screenshot({ path: join(OUT, '4-prompt.png') });

      // Back to partial.py (the prompt document is plain text, where Nearline is off anyway).
      await command(page, 'View: Revert and Close Editor');
      await quickOpen(page, 'partial.py');
      await waitStatus(item, 'ready', (_t, html) => html.includes('codicon-check'), 15_000);

      // Nearline: Toggle → off (status bar), written to user settings; and back on.
      for (const [want, icon] of [
        [false, 'codicon-circle-slash'],
        [true, 'codicon-check'],
      ]) {
        await command(page, 'Nearline: Toggle');
        const by = Date.now() + 15_000;
        while (!(await item.innerHTML()).includes(icon)) {
          if (Date.now() > by) throw new Error(`Toggle: status bar never showed ${icon}`);
          await page.waitForTimeout(200);
        }
        const user = JSON.parse(readFileSync(join(userData, 'User', 'settings.json'), 'utf8'));
        if (user['nearline.completion.enabled'] !== want) {
          throw new Error(`Toggle: user settings say ${user['nearline.completion.enabled']}, want ${want}`);
        }
        step('toggled', { enabled: want });
        if (!want) await page.screenshot({ path: join(OUT, '5-off.png') });
      }
      return { ghostText: ghost, accepted, sawGenerating };
    },

    markdown: async () => {
      await quickOpen(page, 'NOTES.md');
      await page.waitForSelector('.monaco-editor.focused', { timeout: 30_000 });
      const text = await waitStatus(item, '"off for this language"', (t) => t.includes('off for this language'), 15_000);
      await page.keyboard.press('Control+End');
      await page.keyboard.type(' the');
      await expectNoGhost(page, QUIET_MS);
      step('markdown: no ghost text', { status: text });
      await page.screenshot({ path: join(OUT, '6-markdown-off.png') });
      return { status: text };
    },

    manual: async () => {
      writeWorkspaceSettings({ 'nearline.completion.trigger': 'manual' });
      await quickOpen(page, 'manual.py');
      await page.waitForSelector('.monaco-editor.focused', { timeout: 30_000 });
      // The settings file is watched: give the change time to reach the server.
      await page.waitForTimeout(2000);
      const runsBefore = (await serverStats(page)).model ?? 0;
      await page.locator('.monaco-editor.focused .view-lines, .monaco-editor .view-lines').first().click();
      await page.keyboard.press('Control+End');
      await page.keyboard.type('.');
      await expectNoGhost(page, QUIET_MS);
      // No model run while typing: the counters of nearline.status say so.
      const modelRunsWhileTyping = ((await serverStats(page)).model ?? 0) - runsBefore;
      await quickOpen(page, 'manual.py');
      await page.waitForSelector('.monaco-editor.focused', { timeout: 30_000 });
      await page.keyboard.press('Control+End');
      step('manual: nothing while typing', { modelRunsWhileTyping });

      await page.screenshot({ path: join(OUT, '7-manual-typing.png') });
      await page.keyboard.press('Alt+Backslash');
      const ghost = await waitGhost(page, 60_000);
      step('manual: ghost text on Alt+\\', { ghostText: ghost });
      await page.screenshot({ path: join(OUT, '8-manual-invoked.png') });
      await page.keyboard.press('Escape');
      writeWorkspaceSettings({});
      await page.waitForTimeout(1500);
      if (modelRunsWhileTyping !== 0) throw new Error(`manual mode: ${modelRunsWhileTyping} model run(s) while typing`);
      return { ghostText: ghost, modelRunsWhileTyping };
    },

    notebook: async () => {
      await quickOpen(page, 'shipping.ipynb');
      const cells = page.locator('.notebook-editor .cell-editor-container .monaco-editor');
      await cells.nth(1).waitFor({ timeout: 30_000 });
      step('notebook opened', { cells: await cells.count() });
      await cells.nth(1).locator('.view-lines').click();
      await page.keyboard.press('Control+End');
      const ghost = await waitGhost(page, 60_000).catch(async () => {
        // Nothing on entering the cell: type to ask.
        await page.keyboard.type('s');
        await page.keyboard.press('Backspace');
        return waitGhost(page, 60_000);
      });
      step('notebook: ghost text', { ghostText: ghost });
      await page.screenshot({ path: join(OUT, '9-notebook-ghost.png') });
      await page.keyboard.press('Tab');
      await page.waitForTimeout(500);
      const line = clean(await cells.nth(1).locator('.view-line').first().innerText());
      step('notebook: accepted', { line });
      await page.screenshot({ path: join(OUT, '10-notebook-accepted.png') });
      if (!line.includes(NOTEBOOK_NAME)) {
        throw new Error(`the second cell's completion does not use ${NOTEBOOK_NAME} from the first: ${JSON.stringify(line)}`);
      }
      return { ghostText: ghost, line };
    },
  };

  for (const name of CASES) {
    const run = cases[name];
    if (!run) throw new Error(`unknown case ${name} (E2E_CASES)`);
    const started = Date.now();
    try {
      const data = await run();
      result.cases[name] = { ok: true, seconds: (Date.now() - started) / 1000, ...data };
      log(`case ${name}: ok`);
    } catch (err) {
      const message = String(err && err.message ? err.message : err);
      result.cases[name] = { ok: false, seconds: (Date.now() - started) / 1000, error: message };
      log(`case ${name}: FAILED: ${message}`);
      await page.screenshot({ path: join(OUT, `failure-${name}.png`) }).catch(() => undefined);
      await page.keyboard.press('Escape').catch(() => undefined);
    }
  }
  const failed = Object.entries(result.cases).filter(([, c]) => !c.ok).map(([n]) => n);
  if (failed.length) throw new Error(`cases failed: ${failed.join(', ')}`);
}

main().then(
  () => {
    log('e2e: ok');
    cleanup(0);
  },
  (err) => {
    console.error('e2e: FAILED:', err && err.stack ? err.stack : err);
    result.error = String(err && err.message ? err.message : err);
    const page = browser && browser.contexts()[0] && browser.contexts()[0].pages()[0];
    const shot = page ? page.screenshot({ path: join(OUT, 'failure.png') }).catch(() => undefined) : Promise.resolve();
    shot.then(() => cleanup(1));
  },
);

