// What a Schemathesis run counted, read from the "Test cases:" block it prints last, so
// CI can add the fuzz's cases to vitest's tests in one "N passed, M failed" line.
//
// Schemathesis 4.32 (pinned in requirements.txt) prints, in schemathesis/cli/output.py:
//   379 generated, 379 passed, 6 skipped
//   412 generated, 3 found 2 unique failures, 1 errored, 6 skipped
// Its "passed" is the generated count: skipped (no check ran) and errored cases are in it.
// "found" counts the cases with failures; failures, errors and skips are disjoint.

import { stripVTControlCharacters } from 'node:util';

export interface FuzzCounts {
  generated: number;
  passed: number;
  failed: number;
  skipped: number;
}

/** The counts of the last "Test cases:" block in Schemathesis's output, or null when there
 *  is none, a part is not one this knows, or nothing was generated (a run that tested nothing). */
export function parseTestCases(output: string): FuzzCounts | null {
  const lines = stripVTControlCharacters(output).split(/\r?\n/).map((line) => line.trim());
  const heading = lines.lastIndexOf('Test cases:');
  if (heading < 0) return null;
  const summary = lines.slice(heading + 1).find((line) => line !== '');
  if (summary === undefined) return null;

  let generated: number | undefined;
  let passed: number | undefined;
  let withFailures: number | undefined;
  let errored = 0;
  let skipped = 0;
  for (const part of summary.split(', ')) {
    const [, count, what] = /^(\d+) (generated|passed|found \d+ unique failures?|errored|skipped)$/.exec(part) ?? [];
    if (count === undefined || what === undefined) return null;
    const n = Number(count);
    if (what === 'generated') generated = n;
    else if (what === 'passed') passed = n;
    else if (what === 'errored') errored = n;
    else if (what === 'skipped') skipped = n;
    else withFailures = n;
  }
  if (generated === undefined || generated === 0) return null;
  // Where a version prints no failure count, what it did not call passed failed.
  const failures = withFailures ?? (passed === undefined ? 0 : generated - passed);
  const failed = failures + errored;
  const reallyPassed = generated - failed - skipped;
  if (failures < 0 || reallyPassed < 0) return null;
  return { generated, passed: reallyPassed, failed, skipped };
}
