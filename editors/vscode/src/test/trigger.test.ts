import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { LSP_INLINE_AUTOMATIC, LSP_INLINE_INVOKED, lspInlineTriggerKind } from '../trigger';

describe('lspInlineTriggerKind', () => {
  it("maps VS Code's Invoke (0) to LSP Invoked (1) and Automatic (1) to LSP Automatic (2)", () => {
    assert.equal(lspInlineTriggerKind(0), LSP_INLINE_INVOKED);
    assert.equal(lspInlineTriggerKind(1), LSP_INLINE_AUTOMATIC);
    assert.equal(LSP_INLINE_INVOKED, 1);
    assert.equal(LSP_INLINE_AUTOMATIC, 2);
  });
});
