// Every command the documentation shows is run. The fenced code blocks of README.md and
// docs/*.md are read:
// - a ```sh or ```bash block is run, in page order, in a fresh temporary folder per page that
//   holds the inputs the examples name (INPUTS below); a block may use what an earlier block of
//   its page made. Each `convnextv2 ...` line (`\` continuations joined, comments dropped,
//   optional VAR=value settings first) runs as `node dist/cli/main.js ...` and must exit 0.
//   `npm ...` lines are not run (the project's scripts take minutes; CI runs them): each must
//   name a script of package.json or npm ci / test / link. Any other line fails the test.
// - a block whose fence is preceded by `<!-- needs: WHAT -->` (WHAT: data, gpu, mpi or root)
//   needs what this test cannot have; it is not run (and not reported as a node:test skip,
//   which CI refuses): one test lists each with its reason and checks that it is marked for what
//   it needs, that its commands and flags exist, and that there are few of them.
// - blocks in other languages are not run and may not hold a `convnextv2` command line.
// Also: README.md has at most 300 lines and links to every docs page, and every relative link
// of README.md and docs/ points to an existing file (and heading).
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { writeSafetensors } from '../src/io/safetensors_file.js';

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const MAIN = path.join(ROOT, 'dist', 'cli', 'main.js');
const PAGES = ['README.md', ...readdirSync(path.join(ROOT, 'docs')).filter((f) => f.endsWith('.md')).sort().map((f) => `docs/${f}`)];
const SCRIPTS = Object.keys(JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')).scripts as Record<string, string>);
const RUN_LANGS = new Set(['sh', 'bash']);
const OTHER_LANGS = new Set(['ts', 'js', 'json', 'text']);
const NEEDS = ['data', 'gpu', 'mpi', 'root'] as const;
type Need = (typeof NEEDS)[number];
/** At most this many blocks may be marked as not runnable here. */
const MAX_MARKED = 10;

interface Block { page: string; line: number; lang: string; body: string[]; needs: Need | null }

/** The fenced blocks of a Markdown page, with the `<!-- needs: WHAT -->` marker on the line before each. */
function blocks(page: string): Block[] {
  const lines = readFileSync(path.join(ROOT, page), 'utf8').split('\n');
  const out: Block[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^ {0,3}(`{3,}|~{3,})\s*([^\s`]*)/.exec(lines[i]);
    if (!open) continue;
    const fence = open[1];
    const start = i;
    const body: string[] = [];
    for (i++; i < lines.length && !(lines[i].trim().startsWith(fence) && lines[i].trim().replace(/[`~]/g, '') === ''); i++) body.push(lines[i]);
    assert.ok(i < lines.length, `${page}:${start + 1}: a code fence that is never closed`);
    const mark = start > 0 ? /^<!--\s*needs:\s*([a-z]+)\s*-->$/.exec(lines[start - 1].trim()) : null;
    if (mark) assert.ok((NEEDS as readonly string[]).includes(mark[1]), `${page}:${start}: <!-- needs: ${mark[1]} -->: a marker names one of ${NEEDS.join(', ')}`);
    out.push({ page, line: start + 1, lang: open[2], body, needs: mark ? mark[1] as Need : null });
  }
  return out;
}

const ALL = PAGES.flatMap(blocks);

/** A block's command lines: `\` continuations joined, blank and comment lines dropped. */
function commandLines(b: Block): { line: number; text: string }[] {
  const out: { line: number; text: string }[] = [];
  let cur: { line: number; text: string } | null = null;
  b.body.forEach((raw, k) => {
    const s = raw.trim();
    if (!cur && (s === '' || s.startsWith('#'))) return;
    cur = cur ? { line: cur.line, text: cur.text + ' ' + s } : { line: b.line + 1 + k, text: s };
    if (cur.text.endsWith('\\')) cur.text = cur.text.slice(0, -1).trimEnd();
    else { out.push(cur); cur = null; }
  });
  assert.equal(cur, null, `${b.page}:${b.line}: the block ends in a \\ continuation`);
  return out;
}

/** Shell words of one command line: quotes and backslashes as sh reads them; a word starting with # ends the line. What sh would expand or redirect is refused. */
function words(text: string, where: string): string[] {
  const out: string[] = [];
  let w: string | null = null;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === ' ' || c === '\t') { if (w !== null) out.push(w); w = null; continue; }
    if (c === '#' && w === null) break;
    if (c === "'") {
      const j = text.indexOf("'", i + 1);
      assert.ok(j > i, `${where}: unclosed ' in: ${text}`);
      w = (w ?? '') + text.slice(i + 1, j);
      i = j;
      continue;
    }
    if (c === '"') {
      let s = '';
      for (i++; i < text.length && text[i] !== '"'; i++) {
        if (text[i] === '\\' && '"\\$`'.includes(text[i + 1])) s += text[++i];
        else { assert.ok(!'$`'.includes(text[i]), `${where}: ${text[i]} inside "..." would be expanded by sh: ${text}`); s += text[i]; }
      }
      assert.ok(i < text.length, `${where}: unclosed " in: ${text}`);
      w = (w ?? '') + s;
      continue;
    }
    if (c === '\\') { w = (w ?? '') + (text[++i] ?? ''); continue; }
    assert.ok(!'$*?[]{}|;&<>()`~'.includes(c), `${where}: '${c}' is shell syntax or a placeholder (a run block holds literal commands only): ${text}`);
    w = (w ?? '') + c;
  }
  if (w !== null) out.push(w);
  return out;
}

/** One command line: its environment settings and words, or an npm line (checked, not run). */
function parse(text: string, where: string): { kind: 'cli'; env: Record<string, string>; args: string[] } | { kind: 'npm'; parts: string[][] } {
  if (/^npm\s/.test(text)) return { kind: 'npm', parts: text.split('&&').map((p) => words(p.trim(), where)) };
  const ws = words(text, where);
  const env: Record<string, string> = {};
  while (ws.length > 0 && /^[A-Z_][A-Z0-9_]*=/.test(ws[0])) {
    const [k, ...v] = ws.shift()!.split('=');
    env[k] = v.join('=');
  }
  assert.equal(ws[0], 'convnextv2', `${where}: a run block's lines are convnextv2 or npm commands; this one is not: ${text}`);
  return { kind: 'cli', env, args: ws.slice(1) };
}

function checkNpm(parts: string[][], where: string): void {
  for (const p of parts) {
    assert.equal(p[0], 'npm', `${where}: ${p.join(' ')}`);
    const [sub, name] = [p[1], p[2]];
    if (sub === 'run') assert.ok(SCRIPTS.includes(name), `${where}: npm run ${name}: package.json has no such script (${SCRIPTS.join(', ')})`);
    else assert.ok(['ci', 'test', 'link', 'unlink'].includes(sub), `${where}: npm ${sub}: not a command the docs may show`);
  }
}

// ---- the inputs the examples name ------------------------------------------------------------

let inputs: Promise<string> | null = null;
/** A folder with photo.jpg, other.png, images/{train,val}/{red,green}/N.png and in.safetensors, made once. */
function makeInputs(): Promise<string> {
  inputs ??= (async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'cnx-docs-inputs-'));
    const picture = (w: number, h: number, rgb: [number, number, number], seed: number) => {
      const px = Buffer.alloc(w * h * 3);
      for (let i = 0; i < w * h; i++) {
        const v = ((i * 2654435761 + seed * 40503) >>> 24) & 63; // a little texture, deterministic
        for (let c = 0; c < 3; c++) px[i * 3 + c] = Math.min(255, rgb[c] + v);
      }
      return sharp(px, { raw: { width: w, height: h, channels: 3 } });
    };
    await picture(64, 48, [180, 40, 40], 1).jpeg().toFile(path.join(dir, 'photo.jpg'));
    await picture(40, 56, [40, 160, 40], 2).png().toFile(path.join(dir, 'other.png'));
    const classes: [string, [number, number, number]][] = [['red', [190, 30, 30]], ['green', [30, 170, 30]]];
    for (const [part, n] of [['train', 8], ['val', 4]] as const) {
      for (const [name, rgb] of classes) {
        const d = path.join(dir, 'images', part, name);
        mkdirSync(d, { recursive: true });
        for (let i = 0; i < n; i++) await picture(40, 40, rgb, i + (part === 'val' ? 100 : 0)).png().toFile(path.join(d, `${i}.png`));
      }
    }
    const pixels = new Float32Array(2 * 3 * 64 * 64).map((_, i) => Math.sin(i * 0.37) * 1.5);
    writeSafetensors(path.join(dir, 'in.safetensors'), [
      ['pixel_values', { shape: [2, 3, 64, 64], data: pixels }],
      ['mask', { shape: [2, 4], data: Float32Array.of(1, 0, 1, 1, 0, 1, 1, 0) }],
    ]);
    return dir;
  })();
  return inputs;
}

function runCli(args: string[], env: Record<string, string>, cwd: string, where: string): void {
  const r = spawnSync(process.execPath, [MAIN, ...args], {
    cwd, encoding: 'utf8', timeout: 180_000,
    env: { ...process.env, HF_HUB_OFFLINE: '1', ...env },
  });
  const tail = (s: string) => s.split('\n').slice(-12).join('\n');
  assert.equal(r.status, 0, `${where}: convnextv2 ${args.join(' ')} exited ${r.status ?? r.signal}\n--- stderr ---\n${tail(r.stderr)}\n--- stdout ---\n${tail(r.stdout)}`);
}

// ---- the tests -------------------------------------------------------------------------------

assert.ok(existsSync(MAIN), `${MAIN} is missing: npm test builds it (or npx tsc -p tsconfig.json)`);
after(async () => { if (inputs) rmSync(await inputs, { recursive: true, force: true }); });

for (const page of PAGES) {
  const run = ALL.filter((b) => b.page === page && RUN_LANGS.has(b.lang) && b.needs === null);
  if (run.length === 0) continue;
  test(`${page}: every command in its sh blocks runs and exits 0`, async (t) => {
    const cwd = mkdtempSync(path.join(tmpdir(), `cnx-docs-${path.basename(page, '.md')}-`));
    cpSync(await makeInputs(), cwd, { recursive: true });
    try {
      for (const b of run) {
        const cmds = commandLines(b);
        await t.test(`${page}:${b.line}: ${cmds[0]?.text.slice(0, 90) ?? '(empty)'}`, () => {
          assert.ok(cmds.length > 0, `${page}:${b.line}: an empty sh block`);
          for (const c of cmds) {
            const where = `${page}:${c.line}`;
            const p = parse(c.text, where);
            if (p.kind === 'npm') checkNpm(p.parts, where);
            else runCli(p.args, p.env, cwd, where);
          }
        });
      }
    } finally {
      rmSync(cwd, { recursive: true, force: true });
    }
  });
}

/** The command name and flags a `convnextv2` invocation inside a marked line names (after npx, node dist/cli/main.js, mpirun ...). */
function cliPart(text: string): string[] | null {
  const ws = text.split(/\s+/);
  const i = ws.findIndex((w) => w === 'convnextv2' || w.endsWith('dist/cli/main.js'));
  return i < 0 ? null : ws.slice(i + 1);
}

const helpCache = new Map<string, string>();
function helpOf(cmd: string): string {
  if (!helpCache.has(cmd)) {
    const r = spawnSync(process.execPath, [MAIN, cmd, '--help'], { encoding: 'utf8' });
    assert.equal(r.status, 0, `convnextv2 ${cmd} --help: ${r.stderr}`);
    helpCache.set(cmd, r.stdout);
  }
  return helpCache.get(cmd)!;
}

/** Why a marked block cannot run here, read from its lines; null when nothing in it needs what the marker says. */
function whyMarked(b: Block): string | null {
  const text = commandLines(b).map((c) => c.text);
  const flag = (name: string) => text.flatMap((l) => [...l.matchAll(new RegExp(`--${name}[ =](\\S+)`, 'g'))].map((m) => m[1]));
  switch (b.needs) {
    case 'data': {
      const data = flag('data').filter((d) => !/^synthetic(:\d+)?$/.test(d) && !d.startsWith('images'));
      const hub = [...flag('checkpoint'), ...flag('init')].filter((c) => /^(hf-hub:)?(facebook|timm)\/[\w.-]+(@[\w.-]+)?$/.test(c));
      const what = [...data.map((d) => `--data ${d}`), ...hub.map((h) => `${h} from the Hugging Face Hub`)];
      return what.length > 0 ? `needs ${[...new Set(what)].join(', ')}` : null;
    }
    case 'gpu': return text.some((l) => /--device webgpu\b/.test(l)) ? 'needs a WebGPU adapter (--device webgpu)' : null;
    case 'mpi': return text.some((l) => /^(mpirun|mpiexec|srun)\s/.test(l)) ? 'needs an MPI launcher and ranks (npm run test:mpi runs these paths)' : null;
    case 'root': return text.every((l) => /\bapt-get\b/.test(l)) ? 'installs system packages (root, network)' : null;
    default: return null;
  }
}

test(`blocks marked <!-- needs: WHAT --> are few, each is marked for what it needs, and names real commands and flags`, (t) => {
  const marked = ALL.filter((b) => b.needs !== null);
  assert.ok(marked.length <= MAX_MARKED, `${marked.length} blocks are marked as not runnable here (at most ${MAX_MARKED}): write quick examples on --data synthetic instead`);
  for (const b of marked) {
    const where = `${b.page}:${b.line}`;
    assert.ok(RUN_LANGS.has(b.lang), `${where}: a needs marker stands before an sh block, not a ${b.lang || 'plain'} one`);
    const why = whyMarked(b);
    assert.ok(why, `${where}: marked <!-- needs: ${b.needs} --> but none of its lines needs it; run it instead`);
    t.diagnostic(`not run: ${where} (needs: ${b.needs}): ${why}`);
    for (const c of commandLines(b)) {
      const rest = cliPart(c.text);
      if (!rest) continue;
      const help = helpOf(rest[0]);
      for (const f of rest.filter((w) => /^--[a-z]/.test(w)).map((w) => w.split('=')[0])) {
        assert.ok(new RegExp(`(^\\s+|/ )${f}(\\s|$)`, 'm').test(help), `${b.page}:${c.line}: convnextv2 ${rest[0]} has no flag ${f}`);
      }
    }
  }
});

test('every fenced block has a language, and commands are only in sh blocks', () => {
  for (const b of ALL) {
    const where = `${b.page}:${b.line}`;
    assert.ok(RUN_LANGS.has(b.lang) || OTHER_LANGS.has(b.lang), `${where}: a fence names its language (${[...RUN_LANGS, ...OTHER_LANGS].join(', ')}), got '${b.lang}'`);
    if (!RUN_LANGS.has(b.lang)) {
      const cmd = b.body.find((l) => /^\s*(\$\s*)?(npx\s+)?convnextv2\s/.test(l));
      assert.equal(cmd, undefined, `${where}: a convnextv2 command in a ${b.lang} block would not be run: put it in an sh block`);
    }
  }
});

test('README.md is a front page: at most 300 lines, linking to every page of docs/', () => {
  const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const n = readme.split('\n').length - (readme.endsWith('\n') ? 1 : 0);
  assert.ok(n <= 300, `README.md has ${n} lines (at most 300: move the details into docs/)`);
  for (const page of PAGES.filter((p) => p !== 'README.md')) {
    assert.ok(readme.includes(`](${page})`) || readme.includes(`](${page}#`), `README.md does not link to ${page}`);
  }
});

/** GitHub's heading anchors of a page. */
function anchors(page: string): Set<string> {
  const out = new Set<string>();
  const seen = new Map<string, number>();
  let fence: string | null = null;
  for (const line of readFileSync(page, 'utf8').split('\n')) {
    const f = /^ {0,3}(`{3,}|~{3,})/.exec(line);
    if (f) { fence = fence === null ? f[1] : line.trim().startsWith(fence) ? null : fence; continue; }
    if (fence !== null) continue;
    const h = /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line);
    if (!h) continue;
    const text = h[1].replace(/\[([^\]]*)\]\([^)]*\)/g, '$1').replace(/`/g, '');
    const slug = text.toLowerCase().replace(/[^\p{L}\p{N}\s_-]/gu, '').replace(/\s/g, '-');
    const k = seen.get(slug) ?? 0;
    seen.set(slug, k + 1);
    out.add(k === 0 ? slug : `${slug}-${k}`);
  }
  return out;
}

test('every relative link of README.md and docs/ points to a file (and heading) that exists', () => {
  const bad: string[] = [];
  for (const page of PAGES) {
    const file = path.join(ROOT, page);
    let inFence = false;
    readFileSync(file, 'utf8').split('\n').forEach((line, k) => {
      if (/^ {0,3}(`{3,}|~{3,})/.test(line)) inFence = !inFence;
      if (inFence) return;
      const prose = line.replace(/`[^`]*`/g, '');
      for (const m of prose.matchAll(/!?\[[^\]]*\]\(([^)\s]+)\)/g)) {
        const target = m[1];
        if (/^[a-z]+:/i.test(target)) continue; // https:, mailto:
        const [p, anchor] = target.split('#');
        const resolved = p === '' ? file : path.resolve(path.dirname(file), p);
        if (!existsSync(resolved)) { bad.push(`${page}:${k + 1}: ${target}: no such file`); continue; }
        if (anchor !== undefined && anchor !== '') {
          if (statSync(resolved).isDirectory() || !resolved.endsWith('.md')) { bad.push(`${page}:${k + 1}: ${target}: an anchor into a file that is not Markdown`); continue; }
          if (!anchors(resolved).has(anchor)) bad.push(`${page}:${k + 1}: ${target}: no heading #${anchor} in ${path.relative(ROOT, resolved)}`);
        }
      }
    });
  }
  assert.deepEqual(bad, [], `broken links:\n${bad.join('\n')}`);
});
