// Runs the project's command-line scripts as child processes, as a developer would,
// with the test stack's environment: `npm run stripe:trigger`, `billing:events`, ….

import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { env } from './stack.ts';

const execFileAsync = promisify(execFile);

export interface TriggerResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** `script` relative to scripts/, e.g. 'billing-events.ts'. */
export async function runScript(script: string, args: readonly string[], timeoutMs = 20_000): Promise<TriggerResult> {
  const file = fileURLToPath(new URL(`../../scripts/${script}`, import.meta.url));
  try {
    const { stdout, stderr } = await execFileAsync(process.execPath, [file, ...args], {
      env: { ...process.env, NODE_NO_WARNINGS: '1' },
      timeout: timeoutMs,
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof failed.code === 'number' ? failed.code : -1, stdout: failed.stdout ?? '', stderr: failed.stderr ?? '' };
  }
}

export function runTrigger(webhookUrl: string, ...args: string[]): Promise<TriggerResult> {
  return runScript('stripe-trigger.ts', [...args, '--url', webhookUrl, '--database-url', env('DATABASE_URL')]);
}
