import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';

import { PROSE_LANGUAGES, foldLanguageOverrides, languageOff } from '../languages';

const DEFAULT = { enable: true, languages: null, disabledLanguages: PROSE_LANGUAGES };

describe('languageOff', () => {
  it('is on for code and off for prose by default', () => {
    assert.equal(languageOff('python', DEFAULT), undefined);
    assert.match(languageOff('markdown', DEFAULT) ?? '', /markdown is in nearline.completion.disabledLanguages/);
    assert.match(languageOff('git-commit', DEFAULT) ?? '', /disabledLanguages/);
  });

  it('lets an allow list win over the deny list, case-insensitively (as the server does)', () => {
    const rules = { ...DEFAULT, languages: ['Python', 'markdown'] };
    assert.equal(languageOff('python', rules), undefined);
    assert.equal(languageOff('markdown', rules), undefined);
    assert.match(languageOff('go', rules) ?? '', /go is not in nearline.completion.languages/);
    assert.match(languageOff('go', { ...DEFAULT, languages: [] }) ?? '', /not in/);
  });

  it('honours the language-scoped nearline.enable first', () => {
    assert.match(languageOff('python', { ...DEFAULT, enable: false }) ?? '', /nearline.enable is false for \[python\]/);
  });
});

describe('foldLanguageOverrides', () => {
  it('adds the languages turned off in VS Code to the deny list', () => {
    assert.deepEqual(foldLanguageOverrides({ maxTokens: 8, disabledLanguages: ['markdown'] }, ['go', 'Markdown']), {
      maxTokens: 8,
      disabledLanguages: ['markdown', 'go'],
    });
  });

  it('starts from the server default when the deny list is unset', () => {
    assert.deepEqual(foldLanguageOverrides({}, ['go']).disabledLanguages, [...PROSE_LANGUAGES, 'go']);
  });

  it('removes them from an allow list', () => {
    assert.deepEqual(foldLanguageOverrides({ languages: ['python', 'go'] }, ['go']), { languages: ['python'] });
  });

  it('leaves the settings alone when nothing is turned off', () => {
    const c = { languages: null };
    assert.equal(foldLanguageOverrides(c, []), c);
  });
});

describe('PROSE_LANGUAGES', () => {
  it('is the default of nearline.completion.disabledLanguages in package.json', () => {
    const pkg = JSON.parse(readFileSync(join(__dirname, '..', '..', 'package.json'), 'utf8'));
    const props = pkg.contributes.configuration.properties;
    assert.deepEqual(props['nearline.completion.disabledLanguages'].default, PROSE_LANGUAGES);
    assert.equal(props['nearline.enable'].scope, 'language-overridable');
    assert.equal(props['nearline.enable'].default, true);
  });
});
