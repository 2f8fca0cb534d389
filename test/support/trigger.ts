// Runs `npm run stripe:trigger` (scripts/stripe-trigger.ts) as a child process, as a
// developer would, against a given webhook URL and the test database.

import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { env } from './stack.ts';

const execFileAsync = promisify(execFile);
const SCRIPT = fileURLToPath(new URL('../../scripts/stripe-trigger.ts', import.meta.url));

export interface TriggerResult {
  code: number;
  stdout: string;
  stderr: string;
}

export async function runTrigger(webhookUrl: string, ...args: string[]): Promise<TriggerResult> {
  try {
    const { stdout, stderr } = await execFileAsync(
      process.execPath,
      [SCRIPT, ...args, '--url', webhookUrl, '--database-url', env('DATABASE_URL')],
      { env: { ...process.env, NODE_NO_WARNINGS: '1' }, timeout: 20_000 },
    );
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof failed.code === 'number' ? failed.code : -1, stdout: failed.stdout ?? '', stderr: failed.stderr ?? '' };
  }
}
