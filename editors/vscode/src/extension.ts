import * as vscode from 'vscode';
import {
  ClientCapabilities,
  DidChangeConfigurationNotification,
  ExecuteCommandRequest,
  LanguageClient,
  LanguageClientOptions,
  ServerOptions,
  State,
  StaticFeature,
  TransportKind,
  WorkDoneProgress,
  WorkDoneProgressCreateRequest,
} from 'vscode-languageclient/node';

import { foldLanguageOverrides, languageOff } from './languages';
import { formatPrompt } from './prompt';
import { JsonObject, RESTART_SETTINGS, serverCommand, toServerSettings, toggleTarget } from './settings';
import { ProgressValue, StatusModel } from './status';
import { lspInlineTriggerKind } from './trigger';

const SECTION = 'nearline';

let client: LanguageClient | undefined;
let output: vscode.OutputChannel;
let statusItem: vscode.StatusBarItem;
let status = new StatusModel();
let pollTimer: NodeJS.Timeout | undefined;
let starting: Promise<void> | undefined;

/** Language ids whose `"[lang]": { "nearline.enable": false }` scope turns Nearline off. */
function languagesTurnedOff(scope?: vscode.Uri): string[] {
  const ids = vscode.workspace.getConfiguration(SECTION, scope).inspect('enable')?.languageIds ?? [];
  return ids.filter(
    (languageId) =>
      vscode.workspace.getConfiguration(SECTION, { uri: scope, languageId }).get<boolean>('enable', true) === false,
  );
}

/** The server's settings for `scope` (nested camelCase, client-only sections removed). */
function serverSettings(scope?: vscode.Uri): JsonObject {
  const cfg = vscode.workspace.getConfiguration(SECTION, scope);
  // A WorkspaceConfiguration is a nested object plus methods; JSON keeps the values.
  const out = toServerSettings(JSON.parse(JSON.stringify(cfg)) as Record<string, unknown>);
  // The server knows only its own lists: fold the language-scoped switches into them, so a
  // language turned off in VS Code costs no warm-up there either.
  const off = languagesTurnedOff(scope);
  if (off.length > 0) {
    out.completion = foldLanguageOverrides((out.completion ?? {}) as Record<string, unknown>, off) as JsonObject;
  }
  return out;
}

/** Why Nearline is off for `document`'s language (undefined: on). */
function offFor(document: vscode.TextDocument): string | undefined {
  const cfg = vscode.workspace.getConfiguration(SECTION, document);
  return languageOff(document.languageId, {
    enable: cfg.get<boolean>('enable', true),
    languages: cfg.get<string[] | null>('completion.languages', null),
    disabledLanguages: cfg.get<string[]>('completion.disabledLanguages', []),
  });
}

/** The status bar follows the active editor's language. */
function updateLanguage(): void {
  const doc = vscode.window.activeTextEditor?.document;
  status.language = doc?.languageId;
  status.languageOff = doc ? offFor(doc) : undefined;
  render();
}

/**
 * Declares `experimental.nearlineStatus` at initialize: the server then sends
 * `nearline/status` notifications (indexing / loading / ready / generating) to this client,
 * which generic clients do not get (they see `$/progress` for long runs only).
 */
class NearlineStatusFeature implements StaticFeature {
  fillClientCapabilities(capabilities: ClientCapabilities): void {
    capabilities.experimental = { ...(capabilities.experimental as object | undefined), nearlineStatus: true };
  }
  initialize(): void {}
  getState(): { kind: 'static' } {
    return { kind: 'static' };
  }
  clear(): void {}
}

function render(): void {
  const view = status.view();
  statusItem.text = view.text;
  statusItem.tooltip = view.tooltip;
  statusItem.backgroundColor =
    view.severity === 'error'
      ? new vscode.ThemeColor('statusBarItem.errorBackground')
      : view.severity === 'warning'
        ? new vscode.ThemeColor('statusBarItem.warningBackground')
        : undefined;
}

async function executeServerCommand(command: string, args: unknown[]): Promise<unknown> {
  if (!client || client.state !== State.Running) {
    throw new Error('the Nearline server is not running');
  }
  return client.sendRequest(ExecuteCommandRequest.type, { command, arguments: args });
}

async function refreshStatus(): Promise<unknown> {
  try {
    const res = await executeServerCommand('nearline.status', []);
    status.applyStatus(res);
    render();
    return res;
  } catch {
    return undefined;
  }
}

/** Poll nearline.status while the model is not settled yet (progress may be missed). */
function pollUntilSettled(): void {
  if (pollTimer) clearInterval(pollTimer);
  const deadline = Date.now() + 10 * 60_000;
  pollTimer = setInterval(() => {
    if (Date.now() > deadline || status.state === 'ready' || status.state === 'error' || status.state === 'stopped') {
      if (pollTimer) clearInterval(pollTimer);
      pollTimer = undefined;
      return;
    }
    void refreshStatus();
  }, 2000);
}

function createClient(): LanguageClient {
  const cfg = vscode.workspace.getConfiguration(SECTION);
  const { command, args } = serverCommand(cfg.get('server.command'));
  const extraEnv = cfg.get<Record<string, string>>('server.env') ?? {};
  const serverOptions: ServerOptions = {
    command,
    args,
    transport: TransportKind.stdio,
    options: { env: { ...process.env, ...extraEnv } },
  };
  // The middleware needs the client it belongs to (not the module's, which a restart replaces).
  const self: { client?: LanguageClient } = {};
  const clientOptions: LanguageClientOptions = {
    // Notebook cells: with the server's notebookDocumentSync the client sends them as
    // notebookDocument/* (the server completes a cell with the earlier cells as prefix);
    // without it, as separate text documents.
    documentSelector: [{ scheme: 'file' }, { scheme: 'untitled' }, { scheme: 'vscode-notebook-cell' }],
    outputChannel: output,
    initializationOptions: serverSettings(),
    // Registers the change listener; the middleware below sends the server's shape.
    synchronize: { configurationSection: SECTION },
    middleware: {
      workspace: {
        configuration: async (params, token, next) => {
          const res = await next(params, token);
          if (!Array.isArray(res)) return res;
          return params.items.map((item, i) =>
            item.section === SECTION
              ? serverSettings(item.scopeUri ? vscode.Uri.parse(item.scopeUri) : undefined)
              : res[i],
          );
        },
        didChangeConfiguration: async () => {
          await self.client?.sendNotification(DidChangeConfigurationNotification.type, {
            settings: { [SECTION]: serverSettings() },
          });
        },
      },
      provideCompletionItem: (document, position, context, token, next) => {
        if (!vscode.workspace.getConfiguration(SECTION, document).get<boolean>('editor.completionMenu', false)) {
          return undefined;
        }
        if (offFor(document)) return undefined;
        return next(document, position, context, token);
      },
      provideInlineCompletionItems: (document, position, context, token, next) => {
        if (offFor(document)) return undefined;
        // The client sends context.triggerKind as is: give it the LSP number (see trigger.ts).
        const triggerKind = lspInlineTriggerKind(context.triggerKind) as unknown as vscode.InlineCompletionTriggerKind;
        return next(document, position, { ...context, triggerKind }, token);
      },
    },
  };
  const lc = new LanguageClient('nearline', 'Nearline', serverOptions, clientOptions);
  self.client = lc;
  lc.registerProposedFeatures(); // textDocument/inlineCompletion (proposed in vscode-languageclient 9)
  lc.registerFeature(new NearlineStatusFeature());
  lc.onDidChangeState((e) => {
    if (e.newState === State.Running) status.clientState('running');
    else if (e.newState === State.Starting) status.clientState('starting');
    else status.clientState('stopped');
    render();
  });
  return lc;
}

async function startClient(): Promise<void> {
  status = new StatusModel();
  status.enabled = vscode.workspace.getConfiguration(SECTION).get<boolean>('completion.enabled', true);
  render();
  let lc: LanguageClient;
  try {
    lc = createClient();
  } catch (err) {
    status.clientState('stopped', String((err as Error).message ?? err));
    render();
    void vscode.window.showErrorMessage(`Nearline: ${(err as Error).message}`);
    return;
  }
  client = lc;
  try {
    await lc.start();
  } catch (err) {
    const msg = (err as Error).message ?? String(err);
    status.clientState('stopped', `could not start the server: ${msg}`);
    render();
    const pick = await vscode.window.showErrorMessage(
      `Nearline: could not start the server (${msg}). Is \`nearline\` installed? Set nearline.server.command.`,
      'Open settings',
      'Show log',
    );
    if (pick === 'Open settings') void vscode.commands.executeCommand('workbench.action.openSettings', 'nearline.server');
    if (pick === 'Show log') output.show(true);
    return;
  }
  // After start(): replaces the default work-done-progress UI with the status bar item.
  lc.onRequest(WorkDoneProgressCreateRequest.type, ({ token }) => {
    const sub = lc.onProgress(WorkDoneProgress.type, token, (value) => {
      status.progress(token, value as ProgressValue);
      render();
      if (value.kind === 'end') {
        sub.dispose();
        void refreshStatus();
      }
    });
  });
  lc.onNotification('nearline/status', (params: unknown) => {
    status.serverStatus(params);
    render();
  });
  status.clientState('running');
  updateLanguage();
  await refreshStatus();
  pollUntilSettled();
}

async function stopClient(): Promise<void> {
  const lc = client;
  client = undefined;
  if (pollTimer) clearInterval(pollTimer);
  pollTimer = undefined;
  if (lc) {
    try {
      await lc.stop(5000);
    } catch (err) {
      output.appendLine(`stopping the server: ${String(err)}`);
    }
  }
}

function restart(): Promise<void> {
  const run = async () => {
    if (starting) await starting.catch(() => undefined);
    await stopClient();
    await startClient();
  };
  starting = run().finally(() => {
    starting = undefined;
  });
  return starting;
}

async function showPrompt(): Promise<void> {
  const editor = vscode.window.activeTextEditor;
  if (!editor) {
    void vscode.window.showInformationMessage('Nearline: open a file and put the cursor where a suggestion would go.');
    return;
  }
  const pos = editor.selection.active;
  const where = `${vscode.workspace.asRelativePath(editor.document.uri)}:${pos.line + 1}:${pos.character + 1}`;
  let res: unknown;
  try {
    const uri = client ? client.code2ProtocolConverter.asUri(editor.document.uri) : editor.document.uri.toString();
    res = await executeServerCommand('nearline.prompt', [uri, { line: pos.line, character: pos.character }]);
  } catch (err) {
    void vscode.window.showErrorMessage(`Nearline: ${(err as Error).message}`);
    return;
  }
  const doc = await vscode.workspace.openTextDocument({ content: formatPrompt(res, where), language: 'plaintext' });
  await vscode.window.showTextDocument(doc, { preview: false, viewColumn: vscode.ViewColumn.Beside });
}

async function toggle(): Promise<void> {
  const cfg = vscode.workspace.getConfiguration(SECTION);
  const now = cfg.get<boolean>('completion.enabled', true);
  const target = toggleTarget(cfg.inspect('completion.enabled') ?? {});
  await cfg.update(
    'completion.enabled',
    !now,
    target === 'workspaceFolder'
      ? vscode.ConfigurationTarget.WorkspaceFolder
      : target === 'workspace'
        ? vscode.ConfigurationTarget.Workspace
        : vscode.ConfigurationTarget.Global,
  );
  status.enabled = !now;
  render();
  vscode.window.setStatusBarMessage(`Nearline ${now ? 'off' : 'on'}`, 2500);
}

async function showStatus(): Promise<void> {
  const res = await refreshStatus();
  output.appendLine(`nearline.status: ${JSON.stringify(res ?? { state: status.state, error: status.error }, null, 2)}`);
  output.show(true);
}

async function menu(): Promise<void> {
  const items: (vscode.QuickPickItem & { command: string })[] = [
    { label: status.enabled ? '$(circle-slash) Turn off' : '$(check) Turn on', command: 'nearline.toggle' },
    { label: '$(file-text) Show prompt for cursor', command: 'nearline.showPrompt' },
    { label: '$(info) Show status', command: 'nearline.showStatus' },
    { label: '$(output) Show log', command: 'nearline.showLog' },
    { label: '$(debug-restart) Restart server', command: 'nearline.restart' },
    { label: '$(gear) Settings', command: 'nearline.openSettings' },
  ];
  const pick = await vscode.window.showQuickPick(items, { title: status.view().tooltip.split('\n')[0] });
  if (pick) await vscode.commands.executeCommand(pick.command);
}

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  output = vscode.window.createOutputChannel('Nearline');
  statusItem = vscode.window.createStatusBarItem('nearline.status', vscode.StatusBarAlignment.Right, 100);
  statusItem.name = 'Nearline';
  statusItem.command = 'nearline.menu';
  statusItem.show();
  context.subscriptions.push(
    output,
    statusItem,
    vscode.commands.registerCommand('nearline.restart', restart),
    vscode.commands.registerCommand('nearline.showPrompt', showPrompt),
    vscode.commands.registerCommand('nearline.toggle', toggle),
    vscode.commands.registerCommand('nearline.showStatus', showStatus),
    vscode.commands.registerCommand('nearline.showLog', () => output.show(true)),
    vscode.commands.registerCommand('nearline.menu', menu),
    vscode.commands.registerCommand('nearline.openSettings', () =>
      vscode.commands.executeCommand('workbench.action.openSettings', '@ext:nearline.nearline'),
    ),
    vscode.workspace.onDidChangeConfiguration((e) => {
      if (RESTART_SETTINGS.some((s) => e.affectsConfiguration(s))) {
        void restart();
      } else if (e.affectsConfiguration(SECTION)) {
        status.enabled = vscode.workspace.getConfiguration(SECTION).get<boolean>('completion.enabled', true);
        updateLanguage();
        // The client has sent didChangeConfiguration by now; show what the server made of it.
        setTimeout(() => void refreshStatus(), 500);
      }
    }),
    // LSP has no "this document is now active" notification: tell the server, so it restores
    // that document's saved model state and reads what changed before the user types.
    vscode.window.onDidChangeActiveTextEditor((editor) => {
      updateLanguage();
      if (!editor || !client || client.state !== State.Running) {
        return;
      }
      const pos = editor.selection.active;
      void client.sendNotification('nearline/didFocus', {
        textDocument: { uri: client.code2ProtocolConverter.asUri(editor.document.uri) },
        position: { line: pos.line, character: pos.character },
      });
    }),
    { dispose: () => void stopClient() },
  );
  await restart();
}

export function deactivate(): Promise<void> {
  return stopClient();
}
