/**
 * What the status bar item says, from $/progress, nearline.status and the client's state.
 * Pure: no `vscode` import.
 */

export type State = 'starting' | 'idle' | 'indexing' | 'loading' | 'ready' | 'error' | 'stopped';

/** The params of the `nearline/status` notification (sent to clients that declare
 * `experimental.nearlineStatus`). */
export interface NearlineStatusParams {
  state: 'indexing' | 'loading' | 'ready' | 'generating';
  uri?: string | null;
}

export interface ProgressValue {
  kind: 'begin' | 'report' | 'end';
  title?: string;
  message?: string;
  percentage?: number;
}

export interface StatusView {
  text: string;
  tooltip: string;
  severity: 'normal' | 'warning' | 'error';
}

interface Running {
  title: string;
  message?: string;
  percentage?: number;
}

const SERVER_STATES: ReadonlySet<string> = new Set(['idle', 'loading', 'ready', 'error']);

function str(v: unknown): string | undefined {
  return typeof v === 'string' && v !== '' ? v : undefined;
}

/** "Nearline: loading model" → "loading model" (the item already says Nearline). */
function shortTitle(title: string): string {
  return title.replace(/^Nearline:\s*/i, '');
}

export class StatusModel {
  state: State = 'starting';
  error?: string;
  model?: string;
  detail?: string;
  enabled = true;
  /** Why completion is off for the active editor's language (undefined: on). */
  languageOff?: string;
  /** The active editor's language id, for the "off" tooltip. */
  language?: string;
  private readonly running = new Map<string, Running>();
  /** Documents with a model run in progress (`nearline/status` generating … ready). */
  private readonly generating = new Set<string>();

  /** A `nearline/status` notification. */
  serverStatus(params: unknown): void {
    if (typeof params !== 'object' || params === null) return;
    const p = params as Record<string, unknown>;
    const uri = typeof p.uri === 'string' ? p.uri : '';
    switch (p.state) {
      case 'generating':
        this.generating.add(uri);
        if (this.state !== 'error') this.state = 'ready';
        break;
      case 'ready':
        // "ready" for a document ends its run; without a document, all runs are over.
        if (uri) this.generating.delete(uri);
        else this.generating.clear();
        if (this.state !== 'error') this.state = 'ready';
        break;
      case 'indexing':
      case 'loading':
        this.state = p.state;
        break;
    }
  }

  get isGenerating(): boolean {
    return this.generating.size > 0;
  }

  /** A $/progress notification for `token`. */
  progress(token: string | number, value: ProgressValue): void {
    const key = String(token);
    if (value.kind === 'begin') {
      this.running.set(key, {
        title: value.title ?? 'working',
        message: value.message,
        percentage: value.percentage,
      });
    } else if (value.kind === 'report') {
      const r = this.running.get(key);
      if (r) {
        if (value.message !== undefined) r.message = value.message;
        if (value.percentage !== undefined) r.percentage = value.percentage;
      }
    } else {
      const r = this.running.get(key);
      this.running.delete(key);
      // The model-loading progress ends with the service's state as its message.
      if (r && /model/i.test(r.title) && value.message && SERVER_STATES.has(value.message)) {
        this.state = value.message as State;
      }
    }
  }

  get busy(): boolean {
    return this.running.size > 0;
  }

  /** The result of the `nearline.status` command. */
  applyStatus(result: unknown): void {
    if (typeof result !== 'object' || result === null) return;
    const r = result as Record<string, unknown>;
    const state = str(r.state);
    if (state && SERVER_STATES.has(state)) this.state = state as State;
    this.error = str(r.error);
    const engine = (typeof r.engine === 'object' && r.engine !== null ? r.engine : {}) as Record<
      string,
      unknown
    >;
    this.model = str(engine.model) ?? this.model;
    const bits: string[] = [];
    if (typeof engine.threads === 'number') bits.push(`${engine.threads} thread${engine.threads === 1 ? '' : 's'}`);
    if (typeof engine.gpu_layers === 'number') bits.push(`${engine.gpu_layers} GPU layers`);
    if (typeof engine.n_ctx === 'number') bits.push(`context ${engine.n_ctx}`);
    if (engine.backend === 'openai' && typeof engine.url === 'string') {
      bits.push(`on ${engine.url}`);
      if (typeof engine.last_error === 'string') bits.push(`server ${engine.last_error}`);
    }
    this.detail = bits.length ? bits.join(', ') : undefined;
    const settings = (typeof r.settings === 'object' && r.settings !== null ? r.settings : {}) as Record<
      string,
      unknown
    >;
    const completion = settings.completion as Record<string, unknown> | undefined;
    if (completion && typeof completion.enabled === 'boolean') this.enabled = completion.enabled;
  }

  /** The language client's own state: running, starting or stopped (crashed / not started). */
  clientState(state: 'running' | 'starting' | 'stopped', error?: string): void {
    if (state === 'stopped') {
      this.running.clear();
      this.generating.clear();
      this.state = error ? 'error' : 'stopped';
      this.error = error ?? this.error;
    } else if (state === 'starting') {
      this.running.clear();
      this.generating.clear();
      this.state = 'starting';
      this.error = undefined;
    } else if (this.state === 'starting' || this.state === 'stopped') {
      this.state = 'idle';
    }
  }

  view(): StatusView {
    const model = this.model ? `model ${this.model}` : undefined;
    const tail = '\n\nClick for Nearline commands.';
    const latest = [...this.running.values()].pop();
    if (latest) {
      const pct = latest.percentage !== undefined ? ` ${Math.round(latest.percentage)}%` : '';
      const msg = latest.message ? ` ${latest.message}` : '';
      return {
        text: `$(sync~spin) Nearline: ${shortTitle(latest.title)}${msg}${pct}`,
        tooltip: `Nearline: ${shortTitle(latest.title)}${msg}${pct}${tail}`,
        severity: 'normal',
      };
    }
    if (this.state !== 'error' && this.state !== 'stopped' && this.state !== 'starting') {
      if (this.enabled && this.languageOff) {
        return {
          text: '$(circle-slash) Nearline: off for this language',
          tooltip: `Nearline: off for ${this.language ?? 'this language'} (${this.languageOff})${tail}`,
          severity: 'normal',
        };
      }
      if (this.enabled && this.isGenerating) {
        return {
          text: '$(loading~spin) Nearline: generating',
          tooltip: `Nearline: generating a suggestion${model ? `\n${model}` : ''}${tail}`,
          severity: 'normal',
        };
      }
    }
    switch (this.state) {
      case 'error':
        return {
          text: '$(error) Nearline',
          tooltip: `Nearline: error${this.error ? `: ${this.error}` : ''}${tail}`,
          severity: 'error',
        };
      case 'stopped':
        return { text: '$(debug-disconnect) Nearline', tooltip: `Nearline: server stopped${tail}`, severity: 'warning' };
      case 'starting':
        return { text: '$(sync~spin) Nearline', tooltip: `Nearline: starting the server${tail}`, severity: 'normal' };
      case 'indexing':
        return { text: '$(sync~spin) Nearline: indexing', tooltip: `Nearline: indexing the workspace${tail}`, severity: 'normal' };
      case 'loading':
        return { text: '$(sync~spin) Nearline: loading model', tooltip: `Nearline: loading the model${tail}`, severity: 'normal' };
      case 'idle':
        return { text: '$(circle-outline) Nearline', tooltip: `Nearline: no model loaded yet${tail}`, severity: 'normal' };
      case 'ready': {
        const about = [model, this.detail].filter(Boolean).join(' · ');
        if (!this.enabled) {
          return {
            text: '$(circle-slash) Nearline',
            tooltip: `Nearline: off (Nearline: Toggle turns it on)${about ? `\n${about}` : ''}${tail}`,
            severity: 'warning',
          };
        }
        return { text: '$(check) Nearline', tooltip: `Nearline: ready${about ? `\n${about}` : ''}${tail}`, severity: 'normal' };
      }
    }
  }
}
