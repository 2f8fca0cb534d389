// Markdown for the benchmarks' docs: tables, and the part of a doc a run writes.

import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';

/** A markdown table of `rows`: one column per entry of `columns`, its header and its cell. */
export function table<T>(rows: readonly T[], columns: Record<string, (row: T) => string>): string {
  const line = (cells: readonly string[]) => `| ${cells.join(' | ')} |`;
  const cells = Object.values(columns);
  return [line(Object.keys(columns)), line(cells.map(() => '---')), ...rows.map((row) => line(cells.map((cell) => cell(row))))].join('\n');
}

const START = '<!-- generated: start -->';
const END = '<!-- generated: end -->';

/**
 * Puts `generated` between the markers of `file`, keeping the hand-written text around
 * them (what the figures mean, the method); a file without the markers gets them.
 */
export async function writeGenerated(file: string, generated: string): Promise<void> {
  const text = await readFile(file, 'utf8').catch(() => '');
  const start = text.indexOf(START);
  const end = text.indexOf(END);
  const block = `${START}\n${generated.trim()}\n${END}`;
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, start >= 0 && end > start ? text.slice(0, start) + block + text.slice(end + END.length) : `${block}\n`);
}
