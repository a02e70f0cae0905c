import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';

import {
  CLIENT_SECTIONS,
  SERVER_KEYS,
  nest,
  serverCommand,
  splitCommandLine,
  toServerSettings,
  toggleTarget,
} from '../settings';

describe('toServerSettings', () => {
  it('drops client-only sections and unset values', () => {
    const config = {
      server: { command: ['nearline', 'serve'], env: {} },
      editor: { completionMenu: false },
      trace: { server: 'off' },
      model: { id: 'smollm2-135m-instruct-q4_1', path: null, contextLength: null, threads: 2 },
      completion: { enabled: true, maxTokens: 32, debounceMs: 0 },
      context: { composer: 'file-level', budgetTokens: null },
      index: { exclude: ['build/**'], maxFileBytes: 1000, watch: false },
    };
    assert.deepEqual(toServerSettings(config), {
      model: { id: 'smollm2-135m-instruct-q4_1', threads: 2 },
      completion: { enabled: true, maxTokens: 32, debounceMs: 0 },
      context: { composer: 'file-level' },
      index: { exclude: ['build/**'], maxFileBytes: 1000, watch: false },
    });
  });

  it('treats an empty string as unset and keeps false and 0', () => {
    assert.deepEqual(
      toServerSettings({ model: { id: '  ', path: '' }, completion: { enabled: false, suffixLines: 0 } }),
      { completion: { enabled: false, suffixLines: 0 } },
    );
  });

  it('accepts dotted keys as VS Code may report them', () => {
    assert.deepEqual(toServerSettings({ 'completion.maxTokens': 16, 'model.id': 'x', 'server.command': ['a'] }), {
      completion: { maxTokens: 16 },
      model: { id: 'x' },
    });
  });

  it('passes unknown keys on (the server names them in its warning)', () => {
    assert.deepEqual(toServerSettings({ completion: { maxTokenz: 3 } }), { completion: { maxTokenz: 3 } });
  });

  it('ignores functions and non-object sections', () => {
    const cfg = { get: () => 1, has: () => true, model: { id: 'm', update: () => undefined }, weird: 3 };
    assert.deepEqual(toServerSettings(cfg as Record<string, unknown>), { model: { id: 'm' } });
  });
});

describe('nest', () => {
  it('merges dotted and nested keys', () => {
    assert.deepEqual(nest({ 'a.b': 1, a: { c: 2 }, 'a.d.e': 3 }), { a: { b: 1, c: 2, d: { e: 3 } } });
  });
});

describe('serverCommand', () => {
  it('defaults to nearline serve', () => {
    assert.deepEqual(serverCommand(undefined), { command: 'nearline', args: ['serve'] });
  });
  it('takes a list', () => {
    assert.deepEqual(serverCommand(['/opt/n/bin/nearline', 'serve', '--tcp', '1']), {
      command: '/opt/n/bin/nearline',
      args: ['serve', '--tcp', '1'],
    });
  });
  it('takes a string with quotes', () => {
    assert.deepEqual(serverCommand(`"/my dir/nearline" serve`), { command: '/my dir/nearline', args: ['serve'] });
  });
  it('rejects empty and non-string lists', () => {
    assert.throws(() => serverCommand([]), /empty/);
    assert.throws(() => serverCommand(['', '']), /empty/);
    assert.throws(() => serverCommand([1, 2]), /list of strings/);
    assert.throws(() => serverCommand({}), /list of strings/);
  });
});

describe('splitCommandLine', () => {
  it('splits on blanks and keeps quoted blanks', () => {
    assert.deepEqual(splitCommandLine(`  a 'b c'  "d"e "" `), ['a', 'b c', 'de', '']);
  });
  it('rejects an unterminated quote', () => {
    assert.throws(() => splitCommandLine(`a "b`), /unterminated/);
  });
});

describe('toggleTarget', () => {
  it('writes where the value is set', () => {
    assert.equal(toggleTarget({}), 'global');
    assert.equal(toggleTarget({ workspaceValue: false }), 'workspace');
    assert.equal(toggleTarget({ workspaceValue: false, workspaceFolderValue: true }), 'workspaceFolder');
  });
});

describe('package.json', () => {
  // out/test/*.js → the package root is two levels up.
  const pkg = JSON.parse(readFileSync(join(__dirname, '..', '..', 'package.json'), 'utf8'));
  const props: Record<string, { default?: unknown }> = pkg.contributes.configuration.properties;

  it('contributes exactly the server settings plus the client sections', () => {
    const contributed = Object.keys(props).map((k) => k.replace(/^nearline\./, ''));
    const server = contributed.filter((k) => !CLIENT_SECTIONS.has(k.split('.')[0])).sort();
    const expected = Object.entries(SERVER_KEYS)
      .flatMap(([sec, keys]) => keys.map((k) => `${sec}.${k}`))
      .sort();
    assert.deepEqual(server, expected);
  });

  it('sends the contributed defaults as valid server settings', () => {
    const defaults: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(props)) defaults[k.replace(/^nearline\./, '')] = v.default;
    const out = toServerSettings(defaults);
    assert.equal((out.completion as Record<string, unknown>).enabled, true);
    assert.equal(Object.keys(out).includes('server'), false);
    assert.deepEqual((out.model as Record<string, unknown>).id, 'qwen2.5-coder-0.5b-instruct-q4_k_m');
  });

  it('binds Alt+\\ to VS Code\'s Trigger Inline Suggestion (manual mode; VS Code has no default key)', () => {
    const kb = pkg.contributes.keybindings.find(
      (k: { command: string }) => k.command === 'editor.action.inlineSuggest.trigger',
    );
    assert.equal(kb.key, 'alt+\\');
  });

  it('declares every command it uses', () => {
    const commands = pkg.contributes.commands.map((c: { command: string }) => c.command).sort();
    assert.deepEqual(commands, [
      'nearline.restart',
      'nearline.showLog',
      'nearline.showPrompt',
      'nearline.showStatus',
      'nearline.toggle',
    ]);
  });
});
