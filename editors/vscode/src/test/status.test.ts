import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { StatusModel } from '../status';

const READY = {
  state: 'ready',
  error: null,
  engine: { model: 'smollm2-135m-instruct-q4_1', threads: 2, gpu_layers: 0, n_ctx: 2048 },
  settings: { completion: { enabled: true } },
  stats: {},
};

describe('StatusModel', () => {
  it('starts as starting', () => {
    const s = new StatusModel();
    assert.match(s.view().text, /sync~spin/);
    assert.match(s.view().tooltip, /starting/);
  });

  it('shows indexing, then loading the model, then ready', () => {
    const s = new StatusModel();
    s.clientState('running');
    s.progress('idx', { kind: 'begin', title: 'Nearline: indexing' });
    s.progress('idx', { kind: 'report', message: '3/9 files' });
    assert.equal(s.view().text, '$(sync~spin) Nearline: indexing 3/9 files');
    s.progress('idx', { kind: 'end', message: '9 files' });
    s.progress('load', { kind: 'begin', title: 'Nearline: loading model' });
    assert.equal(s.view().text, '$(sync~spin) Nearline: loading model');
    s.progress('load', { kind: 'end', message: 'ready' });
    assert.equal(s.state, 'ready');
    assert.equal(s.view().text, '$(check) Nearline');
    s.applyStatus(READY);
    assert.match(s.view().tooltip, /model smollm2-135m-instruct-q4_1 · 2 threads, 0 GPU layers, context 2048/);
    assert.equal(s.view().severity, 'normal');
  });

  it('shows the latest running progress and percentages', () => {
    const s = new StatusModel();
    s.progress(1, { kind: 'begin', title: 'Nearline: indexing', percentage: 10 });
    s.progress(2, { kind: 'begin', title: 'Nearline: loading model' });
    assert.equal(s.view().text, '$(sync~spin) Nearline: loading model');
    s.progress(2, { kind: 'end' });
    assert.equal(s.view().text, '$(sync~spin) Nearline: indexing 10%');
    s.progress(1, { kind: 'report', percentage: 55.4 });
    assert.equal(s.view().text, '$(sync~spin) Nearline: indexing 55%');
    s.progress(1, { kind: 'end' });
    assert.equal(s.busy, false);
  });

  it('ignores reports and ends for unknown tokens', () => {
    const s = new StatusModel();
    s.progress('x', { kind: 'report', message: 'm' });
    s.progress('x', { kind: 'end', message: 'ready' });
    assert.equal(s.state, 'starting');
  });

  it('shows where a remote engine generates, and its last failure', () => {
    const s = new StatusModel();
    s.clientState('running');
    s.applyStatus({
      ...READY,
      engine: { backend: 'openai', url: 'http://gpu-box:8080/v1', model: 'qwen-7b', last_error: null },
    });
    assert.match(s.view().tooltip, /model qwen-7b · on http:\/\/gpu-box:8080\/v1/);
    s.applyStatus({
      ...READY,
      engine: { backend: 'openai', url: 'http://gpu-box:8080/v1', model: 'qwen-7b', last_error: 'answered HTTP 500' },
    });
    assert.match(s.view().tooltip, /server answered HTTP 500/);
  });

  it('shows errors from nearline.status', () => {
    const s = new StatusModel();
    s.applyStatus({ state: 'error', error: 'model x is not downloaded', engine: null, settings: {} });
    const v = s.view();
    assert.equal(v.text, '$(error) Nearline');
    assert.equal(v.severity, 'error');
    assert.match(v.tooltip, /not downloaded/);
  });

  it('shows off when completion is disabled', () => {
    const s = new StatusModel();
    s.applyStatus({ ...READY, settings: { completion: { enabled: false } } });
    assert.equal(s.view().text, '$(circle-slash) Nearline');
    assert.equal(s.view().severity, 'warning');
  });

  it('follows the client: stopped, crashed, restarted', () => {
    const s = new StatusModel();
    s.applyStatus(READY);
    s.progress('p', { kind: 'begin', title: 'Nearline: indexing' });
    s.clientState('stopped');
    assert.equal(s.view().text, '$(debug-disconnect) Nearline');
    assert.equal(s.busy, false);
    s.clientState('stopped', 'spawn nearline ENOENT');
    assert.equal(s.view().severity, 'error');
    assert.match(s.view().tooltip, /ENOENT/);
    s.clientState('starting');
    assert.equal(s.state, 'starting');
    s.clientState('running');
    assert.equal(s.state, 'idle');
  });

  it('shows generating from nearline/status until the run ends', () => {
    const s = new StatusModel();
    s.clientState('running');
    s.serverStatus({ state: 'indexing', uri: null });
    assert.equal(s.view().text, '$(sync~spin) Nearline: indexing');
    s.serverStatus({ state: 'loading', uri: null });
    assert.equal(s.view().text, '$(sync~spin) Nearline: loading model');
    s.serverStatus({ state: 'ready', uri: null });
    assert.equal(s.view().text, '$(check) Nearline');
    s.serverStatus({ state: 'generating', uri: 'file:///a.py' });
    s.serverStatus({ state: 'generating', uri: 'file:///b.py' });
    assert.equal(s.view().text, '$(loading~spin) Nearline: generating');
    s.serverStatus({ state: 'ready', uri: 'file:///a.py' });
    assert.equal(s.isGenerating, true);
    s.serverStatus({ state: 'ready', uri: 'file:///b.py' });
    assert.equal(s.view().text, '$(check) Nearline');
    s.serverStatus({ state: 'generating', uri: 'file:///a.py' });
    s.clientState('stopped');
    assert.equal(s.isGenerating, false);
  });

  it('says off for this language, with the reason in the tooltip', () => {
    const s = new StatusModel();
    s.applyStatus(READY);
    s.language = 'markdown';
    s.languageOff = 'markdown is in nearline.completion.disabledLanguages';
    assert.equal(s.view().text, '$(circle-slash) Nearline: off for this language');
    assert.match(s.view().tooltip, /off for markdown \(markdown is in nearline.completion.disabledLanguages\)/);
    // Turned off everywhere wins over "this language"; an error wins over both.
    s.enabled = false;
    assert.equal(s.view().text, '$(circle-slash) Nearline');
    s.enabled = true;
    s.applyStatus({ state: 'error', error: 'boom', engine: null, settings: {} });
    assert.equal(s.view().text, '$(error) Nearline');
  });

  it('ignores unknown nearline/status states', () => {
    const s = new StatusModel();
    s.applyStatus(READY);
    s.serverStatus({ state: 'bogus' });
    s.serverStatus(null);
    assert.equal(s.view().text, '$(check) Nearline');
  });

  it('tolerates junk from the server', () => {
    const s = new StatusModel();
    s.applyStatus(null);
    s.applyStatus('ready');
    s.applyStatus({ state: 'bogus', engine: 3, settings: null });
    assert.equal(s.state, 'starting');
  });
});
