/**
 * The `nearline.prompt` result → the text of an untitled document. Pure: no `vscode` import.
 */

export interface PromptPart {
  kind: string;
  path: string | null;
  tokens: number;
}

export function formatPrompt(result: unknown, where: string): string {
  if (typeof result !== 'object' || result === null) {
    return `Nearline: no prompt for ${where} (the server answered ${JSON.stringify(result)})\n`;
  }
  const r = result as Record<string, unknown>;
  if (typeof r.error === 'string') {
    return `Nearline: no prompt for ${where}: ${r.error}\n`;
  }
  const prompt = typeof r.prompt === 'string' ? r.prompt : '';
  const total = typeof r.total_tokens === 'number' ? r.total_tokens : undefined;
  const parts = Array.isArray(r.parts) ? (r.parts as PromptPart[]) : [];
  const lines: string[] = [];
  lines.push(`Nearline prompt for ${where}${total !== undefined ? ` — ${total} tokens` : ''}`);
  if (parts.length) {
    lines.push('');
    lines.push('tokens  part');
    for (const p of parts) {
      const tokens = String(typeof p.tokens === 'number' ? p.tokens : '?').padStart(6);
      lines.push(`${tokens}  ${p.kind}${p.path ? ` ${p.path}` : ''}`);
    }
  }
  lines.push('');
  lines.push('─'.repeat(72));
  return `${lines.join('\n')}\n${prompt}`;
}
