import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { formatPrompt } from '../prompt';

describe('formatPrompt', () => {
  it('shows the token breakdown, then the prompt verbatim', () => {
    const text = formatPrompt(
      {
        prompt: '<|fim_prefix|>def f():\n    return',
        parts: [
          { kind: 'header', path: 'inventory/models.py', tokens: 12 },
          { kind: 'special', path: null, tokens: 3 },
        ],
        total_tokens: 15,
      },
      'a.py:2:11',
    );
    const [head, prompt] = text.split(`${'─'.repeat(72)}\n`);
    assert.match(head, /^Nearline prompt for a\.py:2:11 — 15 tokens\n/);
    assert.match(head, /\n {4}12 {2}header inventory\/models\.py\n/);
    assert.match(head, /\n {5}3 {2}special\n/);
    assert.equal(prompt, '<|fim_prefix|>def f():\n    return');
  });

  it('reports the server error', () => {
    assert.equal(formatPrompt({ error: 'no open document' }, 'b.py:1:1'), 'Nearline: no prompt for b.py:1:1: no open document\n');
    assert.match(formatPrompt(null, 'c.py:1:1'), /answered null/);
  });
});
