/**
 * Which languages Nearline completes in: the server's `completion.languages` /
 * `completion.disabledLanguages` rule (mirrored so the status bar can say "off for this
 * language" without asking), plus VS Code's language-scoped `nearline.enable`.
 * Pure: no `vscode` import.
 */

/** The server's default `completion.disabledLanguages` (server/nearline/config.py PROSE_LANGUAGES). */
export const PROSE_LANGUAGES: readonly string[] = [
  'plaintext',
  'text',
  'markdown',
  'git-commit',
  'git-rebase',
  'scminput',
  'restructuredtext',
  'asciidoc',
];

export interface LanguageRules {
  /** `nearline.enable` as resolved for the document's language (`"[markdown]": {...}`). */
  enable: boolean;
  /** `nearline.completion.languages`: allow list, or null for "every language not denied". */
  languages: readonly string[] | null;
  /** `nearline.completion.disabledLanguages`. */
  disabledLanguages: readonly string[];
}

function lower(list: readonly unknown[]): Set<string> {
  return new Set(list.filter((x): x is string => typeof x === 'string').map((x) => x.toLowerCase()));
}

/**
 * Why completion is off for `languageId`, or undefined when it is on. The server applies the
 * same rule (an allow list, when set, wins over the deny list), so a request the extension
 * would send there gets an empty answer anyway; deciding here saves the round trip and lets
 * the status bar say so.
 */
export function languageOff(languageId: string, rules: LanguageRules): string | undefined {
  const lang = languageId.toLowerCase();
  if (!rules.enable) return `nearline.enable is false for [${languageId}]`;
  if (rules.languages !== null && rules.languages !== undefined) {
    return lower(rules.languages).has(lang) ? undefined : `${languageId} is not in nearline.completion.languages`;
  }
  return lower(rules.disabledLanguages ?? []).has(lang)
    ? `${languageId} is in nearline.completion.disabledLanguages`
    : undefined;
}

/**
 * The server's `completion` lists with VS Code's language-scoped `nearline.enable: false`
 * folded in, so that the server, too, skips those languages (no warm-up on open).
 * `offByLanguage`: the language ids whose `[lang]` scope sets `nearline.enable` to false.
 */
export function foldLanguageOverrides(
  completion: Record<string, unknown>,
  offByLanguage: readonly string[],
): Record<string, unknown> {
  if (offByLanguage.length === 0) return completion;
  const off = lower(offByLanguage);
  const out = { ...completion };
  if (Array.isArray(out.languages)) {
    out.languages = (out.languages as unknown[]).filter((l) => typeof l === 'string' && !off.has(l.toLowerCase()));
  } else {
    const denied = Array.isArray(out.disabledLanguages) ? (out.disabledLanguages as unknown[]) : [...PROSE_LANGUAGES];
    const have = lower(denied);
    out.disabledLanguages = [...denied, ...offByLanguage.filter((l) => !have.has(l.toLowerCase()))];
  }
  return out;
}
