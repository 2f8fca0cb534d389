// scripts/fuzz/summary.ts: the counts CI adds to vitest's, read from what Schemathesis
// 4.32 prints at the end of a run (the text below is its output, as piped, trimmed).

import { describe, expect, it } from 'vitest';
import { parseTestCases } from '../scripts/fuzz/summary.ts';

const PASSED = `
=================================== SUMMARY ====================================

API Operations:
  Selected: 19/19
  Tested: 19

Test Phases:
  ✅ Examples
  ✅ Coverage
  ✅ Fuzzing
  ⏭  Stateful (disabled)

Warnings:
  ⚠️ Missing test data: 1 operation repeatedly returned 404 responses

Test cases:
  379 generated, 379 passed, 6 skipped

Seed: 177825926406492371898478824085243490444

============================= 1 warning in 76.25s ==============================
`;

const FAILED = `
=================================== SUMMARY ====================================

API Operations:
  Selected: 19/19
  Tested: 19

Test Phases:
  ✅ Examples
  ❌ Coverage
  ✅ Fuzzing
  ⏭  Stateful (disabled)

Failures:
  ❌ ST101 Server error: 2
  ❌ ST109 Undocumented HTTP status code: 1

For more information, run \`st explain <code>\` for ST101, ST109.

Test cases:
  412 generated, 5 found 3 unique failures, 1 errored, 6 skipped

Seed: 81203118522090771233925047163307465214

============================== 3 failures in 81.02s ==============================
`;

describe("Schemathesis's test case counts", () => {
  it('a passing run: its "passed" includes the skipped cases, which are not counted as passed', () => {
    expect(parseTestCases(PASSED)).toEqual({ generated: 379, passed: 373, failed: 0, skipped: 6 });
  });

  it('a failing run: cases with failures and errored cases are failed, the rest passed', () => {
    expect(parseTestCases(FAILED)).toEqual({ generated: 412, passed: 400, failed: 6, skipped: 6 });
  });

  it('colored output (a terminal, or --force-color) reads the same', () => {
    const colored = '\x1b[1mTest cases:\x1b[0m\n  \x1b[1m412\x1b[0m generated, \x1b[1m5\x1b[0m found \x1b[1m1\x1b[0m unique failure\n';
    expect(parseTestCases(colored)).toEqual({ generated: 412, passed: 407, failed: 5, skipped: 0 });
  });

  it('without a failure count, what was generated but not passed failed', () => {
    expect(parseTestCases('Test cases:\n  50 generated, 47 passed\n')).toEqual({ generated: 50, passed: 47, failed: 3, skipped: 0 });
  });

  it('no summary, nothing generated, or a part it does not know: null (CI counts 1 failed)', () => {
    expect(parseTestCases('Schema Loading Error\n\n=== 1 error in 0.3s ===\n')).toBeNull();
    expect(parseTestCases('Test cases:\n  No test cases were generated\n')).toBeNull();
    expect(parseTestCases('Test cases:\n  379 generated, 379 passed, 2 flaky\n')).toBeNull();
    expect(parseTestCases('Test cases:\n')).toBeNull();
  });
});
