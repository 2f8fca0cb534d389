// README.md is the entry and docs/ the reference (issue 20): README stays short, and no
// link in either leads nowhere: every relative link names a file of the repository, every
// #anchor a heading of the page it points into (as GitHub makes its ids), and every
// src/ path the prose mentions exists.

import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = path.resolve(import.meta.dirname, '..');
const README_MAX_LINES = 250;

const pages = ['README.md', ...readdirSync(path.join(ROOT, 'docs')).filter((name) => name.endsWith('.md')).map((name) => `docs/${name}`)];

const read = (page: string) => readFileSync(path.join(ROOT, page), 'utf8');

/** The page without fenced code blocks: a `#` line in a shell block is no heading, and a
 *  `[x](y)` in code is no link. */
function withoutCodeBlocks(markdown: string): string {
  const kept: string[] = [];
  let fence: string | null = null;
  for (const line of markdown.split('\n')) {
    const opening = /^\s*(`{3,}|~{3,})/.exec(line)?.[1];
    if (fence === null && opening) fence = opening;
    else if (fence !== null && line.trim().startsWith(fence)) fence = null;
    else if (fence === null) kept.push(line);
  }
  return kept.join('\n');
}

/** A heading's id as GitHub renders it: the heading's text (links as their text, code and
 *  emphasis marks gone), lower-cased, without punctuation, each space a hyphen; a repeated
 *  id gets -1, -2, … */
function headingIds(markdown: string): Set<string> {
  const ids = new Set<string>();
  const seen = new Map<string, number>();
  for (const line of withoutCodeBlocks(markdown).split('\n')) {
    const heading = /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line)?.[1];
    if (heading === undefined) continue;
    const text = heading.replace(/\[([^\]]*)\]\([^)]*\)/g, '$1').replace(/[`*]/g, '');
    const base = text.toLowerCase().replace(/[^\p{L}\p{N}\s_-]/gu, '').replace(/\s/g, '-');
    const count = seen.get(base) ?? 0;
    seen.set(base, count + 1);
    ids.add(count === 0 ? base : `${base}-${count}`);
  }
  return ids;
}

/** The links' targets, outside code: inline (`[text](target)`) and the definitions of
 *  reference-style links (`[label]: target "title"`, up to 3 spaces in, `<target>` too). */
function linkTargets(markdown: string): string[] {
  const prose = withoutCodeBlocks(markdown);
  const inline = prose.replace(/`[^`\n]*`/g, '');
  return [
    ...[...inline.matchAll(/\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)].map((m) => m[1] ?? ''),
    ...[...prose.matchAll(/^ {0,3}\[[^\]\n]+\]:[ \t]*(?:<([^>\n]+)>|(\S+))/gm)].map((m) => m[1] ?? m[2] ?? ''),
  ];
}

interface Link {
  page: string;
  target: string;
}

const links: Link[] = pages.flatMap((page) => linkTargets(read(page)).map((target) => ({ page, target })));
const relativeLinks = links.filter(({ target }) => !/^[a-z][a-z0-9+.-]*:/i.test(target));

/** Why a relative link leads nowhere, or null when it leads to a file (and heading). */
function brokenBecause({ page, target }: Link): string | null {
  const [file = '', anchor] = target.split('#');
  const resolved = file === '' ? path.join(ROOT, page) : path.resolve(path.dirname(path.join(ROOT, page)), decodeURI(file));
  if (!resolved.startsWith(ROOT + path.sep)) return 'outside the repository';
  if (!existsSync(resolved)) return 'no such file';
  if (anchor !== undefined && resolved.endsWith('.md') && !headingIds(readFileSync(resolved, 'utf8')).has(anchor)) {
    return `no heading #${anchor}`;
  }
  return null;
}

describe('README.md and docs/', () => {
  it(`README.md has at most ${README_MAX_LINES} lines`, () => {
    const lines = read('README.md').split('\n');
    const count = lines.at(-1) === '' ? lines.length - 1 : lines.length;
    expect(count).toBeGreaterThan(0);
    expect(count).toBeLessThanOrEqual(README_MAX_LINES);
  });

  it('README.md links to every page of docs/', () => {
    const linked = new Set(links.filter(({ page }) => page === 'README.md').map(({ target }) => target.split('#')[0]));
    const docs = pages.filter((page) => page !== 'README.md' && !page.endsWith('-bench.md') && !page.startsWith('docs/benchmarks'));
    expect(docs.filter((page) => !linked.has(page))).toEqual([]);
  });

  it('every relative link resolves to a file, and every #anchor to a heading of it', () => {
    expect(relativeLinks.length).toBeGreaterThan(50);
    const broken = relativeLinks.flatMap((link) => {
      const why = brokenBecause(link);
      return why === null ? [] : [`${link.page}: (${link.target}) ${why}`];
    });
    expect(broken).toEqual([]);
  });

  it('every src/ path the pages mention exists', () => {
    const mentions = pages.flatMap((page) =>
      [...read(page).matchAll(/(?<![\w./-])src\/[\w./-]*[\w/]/g)].map((m) => ({ page, mention: m[0] })),
    );
    expect(mentions.length).toBeGreaterThan(10);
    const missing = mentions.filter(({ mention }) => !existsSync(path.join(ROOT, mention))).map(({ page, mention }) => `${page}: ${mention}`);
    expect(missing).toEqual([]);
  });
});

describe('linkTargets', () => {
  it('reads inline links and reference-style definitions, not code', () => {
    expect(linkTargets([
      'See [the docs](docs/api.md#auth) and [r][ref].',
      '[ref]: docs/missing.md',
      '  [other]: <docs/with space.md> "Title"',
      '[x]: https://example.com',
      '`[code](not-a-link.md)`',
      '```',
      '[fenced]: docs/not-a-link.md',
      '```',
    ].join('\n'))).toEqual(['docs/api.md#auth', 'docs/missing.md', 'docs/with space.md', 'https://example.com']);
  });
});

describe('headingIds (GitHub-style)', () => {
  it('makes ids as GitHub does, ignoring code blocks', () => {
    const ids = headingIds(
      [
        '# Plans: a catalog as code',
        '## `GET /api/stripe/plans`',
        '### Who sets the quantity, and when',
        '## invoice.created: the invoice carries all of it',
        '```sh',
        '# not a heading',
        '```',
        '## Seats',
        '## Seats',
        '## [Linked](x.md) *and* emphasised',
      ].join('\n'),
    );
    expect([...ids]).toEqual([
      'plans-a-catalog-as-code',
      'get-apistripeplans',
      'who-sets-the-quantity-and-when',
      'invoicecreated-the-invoice-carries-all-of-it',
      'seats',
      'seats-1',
      'linked-and-emphasised',
    ]);
  });
});
