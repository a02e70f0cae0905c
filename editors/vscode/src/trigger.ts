/**
 * VS Code's InlineCompletionTriggerKind (Invoke = 0, Automatic = 1) → LSP 3.18's
 * (Invoked = 1, Automatic = 2). vscode-languageclient 9 passes VS Code's number through
 * unchanged, so without this an automatic request reaches the server as "Invoked" (answered
 * even in manual mode) and Alt+\ as 0 (an invalid value the server rejects).
 * Pure: no `vscode` import.
 */
export const LSP_INLINE_INVOKED = 1;
export const LSP_INLINE_AUTOMATIC = 2;

export function lspInlineTriggerKind(vscodeKind: number): number {
  return vscodeKind === 0 ? LSP_INLINE_INVOKED : LSP_INLINE_AUTOMATIC;
}
