/**
 * The web app's page: sections Open / Classify / Reconstruct / Fine-tune, and in the header the
 * device the model computes on (CPU: WebAssembly, or GPU: WebGPU). The page holds no model and
 * computes nothing heavy: every task goes to the Worker (worker.ts) as files, and comes back as
 * data the page draws. While a task runs the controls are disabled (Cancel stays
 * live during fine-tuning); every failure is one line in the section that asked, and goes when
 * the user next acts there. The fine-tune settings are checked at their fields before a run.
 */
import { drawLossPlot, type EpochMark, type LossPoint } from './loss_plot.js';
import {
  heldOutCounts, MIN_PER_CLASS_FOR_SPLIT, settingProblems,
  type Backbone, type CheckpointSummary, type Classified, type Device, type DeviceInfo, type FinetuneSettings, type FromWorker, type Kind, type Requests,
  type Results, type Rgb, type SettingField, type Skipped, type StepProgress, type ToWorker,
} from './protocol.js';

// ---- the Worker -----------------------------------------------------------------------------

interface Listener {
  progress?: (stage: string, done: number, total: number) => void;
  step?: (s: StepProgress) => void;
  epoch?: (e: Extract<FromWorker, { type: 'epoch' }>['epoch']) => void;
}

interface Pending {
  resolve: (r: unknown) => void;
  reject: (e: Error) => void;
  on: Listener;
}

/** Requests to the Worker as promises; a Worker that dies fails them all and is started again. */
class Backend {
  private worker!: Worker;
  private next = 1;
  private readonly pending = new Map<number, Pending>();

  constructor(private readonly onReady: (m: Extract<FromWorker, { type: 'ready' }>) => void, private readonly onCrash: (why: string) => void) {
    this.start();
  }

  private start(): void {
    this.worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module', name: 'convnextv2' });
    this.worker.onmessage = (ev: MessageEvent<FromWorker>) => this.receive(ev.data);
    this.worker.onerror = (ev: ErrorEvent) => {
      ev.preventDefault();
      this.crash(ev.message || 'the worker script failed to load');
    };
    this.worker.onmessageerror = () => this.crash('a message from the worker could not be read');
  }

  private crash(why: string): void {
    const err = new Error(`the worker stopped (${why}); it has been restarted: open the checkpoint again`);
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
    this.worker.terminate();
    this.onCrash(why);
    this.start();
  }

  private receive(m: FromWorker): void {
    if (m.type === 'ready') {
      this.onReady(m);
      return;
    }
    const p = this.pending.get(m.id);
    if (!p) return;
    if (m.type === 'done') {
      this.pending.delete(m.id);
      p.resolve(m.result);
    } else if (m.type === 'error') {
      this.pending.delete(m.id);
      p.reject(new Error(m.message));
    } else if (m.type === 'progress') {
      p.on.progress?.(m.stage, m.done, m.total);
    } else if (m.type === 'step') {
      p.on.step?.(m.step);
    } else {
      p.on.epoch?.(m.epoch);
    }
  }

  call<K extends Kind>(type: K, req: Requests[K], on: Listener = {}): Promise<Results[K]> {
    const id = this.next++;
    return new Promise<Results[K]>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (r: unknown) => void, reject, on });
      this.worker.postMessage({ type, id, ...req } as ToWorker);
    });
  }

  cancel(): void {
    this.worker.postMessage({ type: 'cancel' } satisfies ToWorker);
  }
}

// ---- small DOM helpers ----------------------------------------------------------------------

function $<T extends HTMLElement = HTMLElement>(id: string): T {
  const e = document.getElementById(id);
  if (!e) throw new Error(`#${id} missing from the page`);
  return e as T;
}

function h<K extends keyof HTMLElementTagNameMap>(tag: K, props: Partial<Record<string, string>> = {}, ...children: (Node | string)[]): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) if (v !== undefined) e.setAttribute(k, v);
  e.append(...children);
  return e;
}

function say(id: string, text: string, kind: 'error' | 'ok' | 'info' = 'info'): void {
  const e = $(id);
  e.textContent = text;
  e.className = `msg ${text ? kind : ''}`;
}

/** Clears message `id` when it shows an error (or, with `about`, an error starting so). */
function clearError(id: string, about = ''): void {
  const e = $(id);
  if (e.classList.contains('error') && (e.textContent ?? '').startsWith(about)) say(id, '');
}

function megs(n: number): string {
  return n >= 1e6 ? `${(n / 1e6).toFixed(2)} M` : `${(n / 1e3).toFixed(1)} k`;
}

function skippedText(s: Skipped[]): string {
  if (s.length === 0) return '';
  return `skipped ${s.length === 1 ? s[0].name : `${s.length} files`}: ${s[0].reason}${s.length > 1 ? ` (${s[0].name}, ...)` : ''}`;
}

/** A section's progress bar and text: `null` hides it; `total` 0 shows an indeterminate bar. */
function progress(id: string, text: string | null, done = 0, total = 0): void {
  const box = $(id);
  box.hidden = text === null;
  const bar = box.querySelector('progress') as HTMLProgressElement;
  if (total > 0) {
    bar.max = total;
    bar.value = done;
  } else {
    bar.removeAttribute('value');
  }
  (box.querySelector('span') as HTMLElement).textContent = text ?? '';
}

/** One object URL per file for its thumbnails (the files stay in memory as long as the page shows them). */
const thumbUrls = new WeakMap<File, string>();
function thumbUrl(f: File): string {
  let u = thumbUrls.get(f);
  if (u === undefined) thumbUrls.set(f, (u = URL.createObjectURL(f)));
  return u;
}

// ---- files from inputs and drops ------------------------------------------------------------

interface PathFile {
  file: File;
  /** Relative to what was chosen or dropped: 'cats/a.jpg' (just the name for a plain file). */
  path: string;
}

const IMAGE_NAME = /\.(jpe?g|png|webp|gif|bmp|avif)$/i;

function inputFiles(input: HTMLInputElement): PathFile[] {
  const out = Array.from(input.files ?? [], (file) => ({ file, path: file.webkitRelativePath || file.name }));
  input.value = ''; // choosing the same file again fires `change` again
  return out;
}

function readDirectory(dir: FileSystemDirectoryEntry, depth: number): Promise<PathFile[]> {
  return new Promise((resolve, reject) => {
    const reader = dir.createReader();
    const entries: FileSystemEntry[] = [];
    const more = () => reader.readEntries((batch) => {
      if (batch.length === 0) {
        Promise.all(entries.map((e) => readEntry(e, depth))).then((r) => resolve(r.flat()), reject);
      } else {
        entries.push(...batch);
        more();
      }
    }, reject);
    more();
  });
}

function readEntry(e: FileSystemEntry, depth: number): Promise<PathFile[]> {
  if (e.isFile) {
    return new Promise((resolve, reject) => (e as FileSystemFileEntry).file((file) => resolve([{ file, path: e.fullPath.replace(/^\//, '') }]), reject));
  }
  if (e.isDirectory && depth > 0) return readDirectory(e as FileSystemDirectoryEntry, depth - 1);
  return Promise.resolve([]);
}

/** The files of a drop, folders read down to `depth` levels. */
async function droppedFiles(dt: DataTransfer, depth: number): Promise<PathFile[]> {
  const entries = Array.from(dt.items, (it) => (it.kind === 'file' ? it.webkitGetAsEntry() : null));
  if (entries.every((e) => e === null)) return Array.from(dt.files, (file) => ({ file, path: file.name }));
  const all = await Promise.all(entries.map((e) => (e ? readEntry(e, depth) : Promise.resolve([]))));
  return all.flat();
}

/** Makes `zone` take drops (and `input` choices) of files, handing them to `take`. */
function dropZone(zone: HTMLElement, inputs: HTMLInputElement[], depth: number, take: (files: PathFile[]) => void): void {
  zone.addEventListener('dragover', (ev) => {
    ev.preventDefault();
    if (ev.dataTransfer) ev.dataTransfer.dropEffect = busy ? 'none' : 'copy';
    zone.classList.add('over');
  });
  zone.addEventListener('dragleave', () => zone.classList.remove('over'));
  zone.addEventListener('drop', (ev) => {
    ev.preventDefault();
    ev.stopPropagation();
    zone.classList.remove('over');
    if (busy || !ev.dataTransfer) return;
    droppedFiles(ev.dataTransfer, depth).then(take, (e: unknown) => say(statusOf(zone), `cannot read what was dropped: ${e instanceof Error ? e.message : String(e)}`, 'error'));
  });
  for (const input of inputs) input.addEventListener('change', () => take(inputFiles(input)));
}

function statusOf(zone: HTMLElement): string {
  const section = zone.closest('section');
  return `${section?.id === 'reconstruct' ? 'rec' : section?.id === 'finetune' ? 'ft' : section?.id ?? 'open'}-msg`;
}

// ---- state ----------------------------------------------------------------------------------

/** How a message that needs an open checkpoint starts (opening one clears them). */
const NO_CHECKPOINT = 'Open a checkpoint first';

let busy = false;
let summary: CheckpointSummary | null = null;
let classifyFiles: File[] = [];
let reconstructFiles: File[] = [];
let reconstructSeed = 0;
let lossPoints: LossPoint[] = [];
let totalSteps = 0;

/** The device the Worker computes on (the select shows it). */
let device: Device = 'cpu';
/** Why the reference kernels stand in for the WebAssembly ones, or null. */
let cpuFallback: string | null = null;

/** The header's badge and device choice for the backend in use. */
function showDevice(info: DeviceInfo): void {
  device = info.device;
  ($('device') as HTMLSelectElement).value = info.device;
  const badge = $('kernels');
  badge.textContent = `${info.kernels}${info.device === 'cpu' && globalThis.crossOriginIsolated ? ' · cross-origin isolated' : ''}`;
  badge.dataset.device = info.device;
  badge.dataset.adapter = info.adapter;
  badge.classList.toggle('warn', info.software || (info.device === 'cpu' && cpuFallback !== null));
  badge.title = info.device === 'cpu' && cpuFallback ? cpuFallback : info.adapter;
}

/** What the page says about the device: the adapter in use, plainly when it is a software one. */
function deviceWords(info: DeviceInfo): string {
  if (info.device === 'cpu') return `Computing on the CPU: ${info.kernels}.`;
  const soft = info.software ? ' This is a software adapter (the GPU emulated on the CPU): correct but slower than the CPU.' : '';
  return `Computing on the GPU: ${info.adapter}.${soft}`;
}

/** Offers the GPU only where the page and the Worker both have WebGPU; `why` is the Worker's reason when it has none. */
function offerGpu(why: string | null): void {
  const option = ($('device') as HTMLSelectElement).querySelector('option[value=gpu]') as HTMLOptionElement;
  const inPage = (navigator as { gpu?: unknown }).gpu !== undefined;
  const missing = !inPage ? 'this browser has no WebGPU (navigator.gpu)' : why;
  option.disabled = missing !== null;
  option.textContent = missing === null ? 'GPU (WebGPU)' : 'GPU (WebGPU): not available';
  option.title = missing ?? '';
  if (inPage && why !== null) say('device-msg', `This browser has WebGPU in the page but not in its Workers, where the model runs (${why}): the CPU is used.`, 'info');
}

const backend = new Backend((m) => {
  cpuFallback = m.fallback;
  showDevice(m.info);
  offerGpu(m.noGpu);
  if (m.fallback) say('open-msg', `Note: ${m.fallback}; the slow TypeScript reference kernels are used instead.`, 'info');
}, (why) => {
  summary = null;
  say('device-msg', '');
  renderSummary();
  say('open-msg', `The worker stopped (${why}) and was restarted: open the checkpoint again.`, 'error');
});

/** Runs one Worker task with the controls disabled; its error (one line) goes to `msgId`. */
async function task<T>(msgId: string, run: () => Promise<T>): Promise<T | undefined> {
  setBusy(true);
  say(msgId, '');
  try {
    return await run();
  } catch (e) {
    say(msgId, e instanceof Error ? e.message : String(e), 'error');
    return undefined;
  } finally {
    setBusy(false);
  }
}

function setBusy(on: boolean): void {
  busy = on;
  document.body.classList.toggle('busy', on);
  for (const e of document.querySelectorAll<HTMLInputElement | HTMLButtonElement | HTMLSelectElement>('[data-busy]')) e.disabled = on;
  ($('rec-remask') as HTMLButtonElement).disabled = on || reconstructFiles.length === 0 || !summary?.fcmae;
}

// ---- Device ---------------------------------------------------------------------------------

/** Moves the Worker (and the open model, fine-tuned or not) to `to`; the select goes back when that fails. */
async function chooseDevice(to: Device): Promise<void> {
  const r = await task('device-msg', () => backend.call('device', { device: to }, {
    progress: (stage) => say('device-msg', `${stage}\u2026`, 'info'),
  }));
  if (!r) {
    ($('device') as HTMLSelectElement).value = device;
    return;
  }
  showDevice(r);
  say('device-msg', `${deviceWords(r)}${r.moved && summary ? ` ${summary.file} was reloaded there.` : ''}`, r.software ? 'info' : 'ok');
  if (r.moved && summary && classifyFiles.length > 0) await classify(classifyFiles);
}

// ---- Open -----------------------------------------------------------------------------------

async function open(files: PathFile[]): Promise<void> {
  if (files.length === 0) return;
  // A folder: its own files (a run or Hugging Face folder), not those of sub-folders.
  const top = files.filter((f) => f.path.split('/').length <= 2);
  const chosen = (top.length > 0 ? top : files).map((f) => f.file);
  const bytes = chosen.reduce((a, f) => a + f.size, 0);
  const s = await task('open-msg', async () => {
    progress('open-progress', `reading ${chosen.length === 1 ? chosen[0].name : `${chosen.length} files`} (${(bytes / 1e6).toFixed(1)} MB)`);
    try {
      return await backend.call('open', { files: chosen });
    } finally {
      progress('open-progress', null);
    }
  });
  if (!s) return;
  summary = s;
  renderSummary();
  say('open-msg', `Opened ${s.file}.`, 'ok');
  for (const id of ['classify-msg', 'rec-msg', 'ft-msg']) clearError(id, NO_CHECKPOINT);
  ($('ft-size') as HTMLInputElement).value = String(s.inputSize);
  checkSettings();
  ($('rec-size') as HTMLInputElement).value = String(Math.max(32, Math.round(s.inputSize / 32) * 32));
  ($('ft-download') as HTMLButtonElement).hidden = true;
  $('rec-results').replaceChildren();
  ($('rec-png') as HTMLAnchorElement).hidden = true;
  if (classifyFiles.length > 0) await classify(classifyFiles);
}

function renderSummary(): void {
  const dl = $('ck-info');
  dl.hidden = summary === null;
  document.body.classList.toggle('loaded', summary !== null);
  $('rec-hint').classList.toggle('ok', summary?.fcmae != null);
  setBusy(busy);
  if (!summary) {
    dl.replaceChildren();
    return;
  }
  const s = summary;
  const rows: [string, string][] = [
    ['File', s.file],
    ['Format', s.format],
    ['Model', `${s.architecture} ${s.depths.join('-')} / ${s.dims.join('-')}${s.block === 'v1' ? ' (LayerScale, no GRN)' : ''}, ${megs(s.params)} parameters`],
    ['Classes', classesText(s)],
    ['FCMAE', s.fcmae
      ? `decoder ${s.fcmae.decoderDepth} × ${s.fcmae.decoderDim}, ${megs(s.decoderParams)} parameters, mask ratio ${s.fcmae.maskRatio}, norm-pix loss ${s.fcmae.normPixLoss ? 'on' : 'off'}${s.fcmae.normPixAssumed ? ' (assumed)' : ''}`
      : 'none'],
    ['Input', `${s.inputSize} px, crop ${s.cropPct}${s.preprocessingRecorded ? '' : ' (defaults: the file records none)'}`],
  ];
  if (s.notes.length > 0) rows.push(['Notes', s.notes.join('; ')]);
  dl.replaceChildren(...rows.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
  $('rec-hint').textContent = s.fcmae
    ? `${s.file} has an FCMAE decoder: image | masked | reconstruction.`
    : `${s.file} has no FCMAE decoder; open an FCMAE pre-training checkpoint (convnextv2 pretrain's, or an official *_fcmae.pt) for reconstructions.`;
}

function classesText(s: CheckpointSummary): string {
  if (s.numClasses === 0) return 'none: a backbone (features only)';
  const shown = s.classNames.slice(0, 6).join(', ') + (s.numClasses > 6 ? ', ...' : '');
  const source = { checkpoint: 'names from the checkpoint', 'imagenet-1k': 'ImageNet-1k names', none: 'no names in the file', 'fine-tuned': 'fine-tuned here' }[s.classSource] ?? s.classSource;
  return `${s.numClasses} (${source}): ${shown}`;
}

// ---- Classify -------------------------------------------------------------------------------

async function classify(files: File[]): Promise<void> {
  if (files.length === 0) return;
  if (!summary) {
    say('classify-msg', `${NO_CHECKPOINT} (Open, at the top).`, 'error');
    return;
  }
  const r = await task('classify-msg', async () => {
    try {
      return await backend.call('classify', { images: files, topK: 5 }, {
        progress: (stage, done, total) => progress('classify-progress', `${stage} ${done + 1} of ${total}`, done, total),
      });
    } finally {
      progress('classify-progress', null);
    }
  });
  if (!r) return;
  classifyFiles = files; // classified again with the next checkpoint or head
  const urls = new Map(files.map((f) => [f.name, f]));
  $('classify-results').replaceChildren(...r.items.map((it) => resultCard(it, urls.get(it.name))));
  const what = summary?.fineTuned ? 'with the fine-tuned head' : summary?.numClasses === 0 ? 'embeddings only (no head)' : `with ${summary?.file}`;
  const note = `${r.items.length} image${r.items.length > 1 ? 's' : ''} ${what} at ${r.inputSize} px (crop ${r.cropPct}) in ${r.seconds.toFixed(2)} s.`;
  say('classify-msg', r.skipped.length ? `${note} ${skippedText(r.skipped)}` : note, r.skipped.length ? 'error' : 'ok');
}

function resultCard(it: Classified, file: File | undefined): HTMLElement {
  const img = h('img', { alt: it.name });
  if (file) img.src = thumbUrl(file);
  const top = h('ol', { class: 'top' }, ...it.top.map((t) => {
    const li = h('li', { 'data-label': t.label, 'data-index': String(t.index), 'data-probability': String(t.probability) },
      h('span', { class: 'bar', style: `width: ${(100 * t.probability).toFixed(1)}%` }),
      h('span', { class: 'label' }, t.label),
      h('span', { class: 'p' }, `${(100 * t.probability).toFixed(2)}%`));
    return li;
  }));
  const preview = Array.from(it.embedding.subarray(0, 3), (v) => v.toFixed(3)).join(', ');
  const copy = h('button', { class: 'link' }, 'copy as JSON');
  copy.addEventListener('click', () => {
    const json = JSON.stringify({ image: it.name, checkpoint: summary?.file ?? '', dim: it.embedding.length, embedding: Array.from(it.embedding) });
    navigator.clipboard.writeText(json).then(() => { copy.textContent = 'copied'; }, () => downloadBytes(new TextEncoder().encode(json), `${it.name}.embedding.json`, 'application/json'));
  });
  const emb = h('div', { class: 'emb', 'data-dim': String(it.embedding.length), 'data-norm': String(it.norm) },
    `embedding ${it.embedding.length}-d, norm ${it.norm.toFixed(2)}: [${preview}, ...] `, copy);
  return h('div', { class: 'result', 'data-name': it.name },
    img,
    h('div', { class: 'body' }, h('div', { class: 'name' }, it.name, h('span', { class: 'dim' }, ` ${it.width}×${it.height}`)), it.top.length ? top : h('p', { class: 'dim' }, 'no classifier head'), emb));
}

// ---- Reconstruct ----------------------------------------------------------------------------

async function reconstruct(files: File[]): Promise<void> {
  if (files.length === 0) return;
  if (!summary) {
    say('rec-msg', `${NO_CHECKPOINT} (Open, at the top).`, 'error');
    return;
  }
  const size = Number(($('rec-size') as HTMLInputElement).value);
  const r = await task('rec-msg', async () => {
    try {
      return await backend.call('reconstruct', { images: files, size, seed: reconstructSeed }, {
        progress: (stage, done, total) => progress('rec-progress', stage === 'decoding' ? `decoding ${done + 1} of ${total}` : stage, done, total),
      });
    } finally {
      progress('rec-progress', null);
    }
  });
  if (!r) return;
  reconstructFiles = files;
  setBusy(false); // 'New mask' needs the files
  $('rec-results').replaceChildren(
    h('div', { class: 'head' }, h('span', {}, 'image'), h('span', {}, 'masked'), h('span', {}, 'reconstruction')),
    ...r.items.map((it) => h('div', { class: 'triplet', 'data-name': it.name }, canvasOf(it.original, 'original'), canvasOf(it.masked, 'masked'), canvasOf(it.reconstruction, 'reconstruction'))));
  const a = $('rec-png') as HTMLAnchorElement;
  if (a.href.startsWith('blob:')) URL.revokeObjectURL(a.href);
  a.href = URL.createObjectURL(new Blob([r.png as Uint8Array<ArrayBuffer>], { type: 'image/png' }));
  a.hidden = false;
  const note = `${r.items.length} image${r.items.length > 1 ? 's' : ''} at ${r.size} px, mask ratio ${r.maskRatio}, loss ${r.loss.toFixed(4)} (mask ${reconstructSeed + 1}).`;
  say('rec-msg', r.skipped.length ? `${note} ${skippedText(r.skipped)}` : note, r.skipped.length ? 'error' : 'ok');
}

function canvasOf(img: Rgb, role: string): HTMLCanvasElement {
  const c = h('canvas', { width: String(img.width), height: String(img.height), 'data-role': role, title: role });
  const ctx = c.getContext('2d');
  if (ctx) {
    const d = ctx.createImageData(img.width, img.height);
    for (let i = 0, n = img.width * img.height; i < n; i++) {
      d.data[i * 4] = img.data[i * 3];
      d.data[i * 4 + 1] = img.data[i * 3 + 1];
      d.data[i * 4 + 2] = img.data[i * 3 + 2];
      d.data[i * 4 + 3] = 255;
    }
    ctx.putImageData(d, 0, 0);
  }
  return c;
}

// ---- Fine-tune ------------------------------------------------------------------------------

interface ClassEntry {
  el: HTMLElement;
  name: HTMLInputElement;
  files: File[];
}

const classes: ClassEntry[] = [];

function addClass(name = '', files: File[] = []): ClassEntry {
  const nameInput = h('input', { class: 'class-name', placeholder: 'class name', value: name, 'data-busy': '', 'aria-label': 'class name' });
  const fileInput = h('input', { type: 'file', multiple: '', accept: 'image/*', class: 'class-files', 'data-busy': '' });
  const count = h('span', { class: 'count' });
  const thumbs = h('div', { class: 'thumbs' });
  const zone = h('label', { class: 'drop small' }, fileInput, count);
  const remove = h('button', { class: 'remove', title: 'remove this class', 'data-busy': '', 'aria-label': 'remove this class' }, '×');
  const el = h('div', { class: 'class-card' }, nameInput, zone, thumbs, remove);
  const entry: ClassEntry = { el, name: nameInput, files: [] };
  const show = () => {
    count.textContent = entry.files.length ? `${entry.files.length} image${entry.files.length > 1 ? 's' : ''}` : 'drop images or click';
    thumbs.replaceChildren(...entry.files.slice(0, 12).map((f) => h('img', { src: thumbUrl(f), alt: f.name, title: f.name })));
  };
  dropZone(zone, [fileInput], 2, (got) => {
    // Files chosen one by one are all taken (the worker names those it cannot decode); from folders, images only.
    entry.files.push(...got.filter((f) => f.path === f.file.name || IMAGE_NAME.test(f.file.name)).map((f) => f.file));
    show();
    checkSettings();
  });
  remove.addEventListener('click', () => {
    classes.splice(classes.indexOf(entry), 1);
    el.remove();
    checkSettings();
  });
  entry.files.push(...files);
  show();
  classes.push(entry);
  $('ft-classes').append(el);
  return entry;
}

/** A folder with one sub-folder per class (or several class folders dropped together). */
function takeClassFolders(files: PathFile[]): void {
  const images = files.filter((f) => IMAGE_NAME.test(f.file.name));
  const deep = images.some((f) => f.path.split('/').length >= 3);
  const byClass = new Map<string, File[]>();
  let ignored = files.length - images.length;
  for (const f of images) {
    const parts = f.path.split('/');
    if (deep ? parts.length < 3 : parts.length < 2) {
      ignored++;
      continue;
    }
    const name = parts[parts.length - 2];
    byClass.set(name, [...(byClass.get(name) ?? []), f.file]);
  }
  if (byClass.size === 0) {
    say('ft-msg', 'no class folders with images found: choose a folder holding one sub-folder of images per class', 'error');
    return;
  }
  // Replace the empty cards; add to a class of the same name.
  for (const c of [...classes]) if (c.files.length === 0 && c.name.value.trim() === '') { c.el.remove(); classes.splice(classes.indexOf(c), 1); }
  for (const [name, fs] of [...byClass].sort(([a], [b]) => a.localeCompare(b))) {
    const same = classes.find((c) => c.name.value.trim() === name);
    if (same) {
      same.files.push(...fs);
      same.el.remove();
      classes.splice(classes.indexOf(same), 1);
      addClass(name, same.files);
    } else {
      addClass(name, fs);
    }
  }
  const n = [...byClass.values()].reduce((a, f) => a + f.length, 0);
  say('ft-msg', `${byClass.size} classes, ${n} images${ignored ? ` (${ignored} other files ignored)` : ''}.`, 'ok');
  checkSettings();
}

/** The sample images (three classes of the synthetic set) as the classes to fine-tune on. */
async function takeSample(): Promise<void> {
  const r = await task('ft-msg', () => backend.call('sample', {}));
  if (!r) return;
  takeClassFolders(r.classes.flatMap((c) => c.files.map((file) => ({ file, path: `${c.name}/${file.name}` }))));
  const n = r.classes.reduce((a, c) => a + c.files.length, 0);
  say('ft-msg', `Sample: ${r.classes.length} classes of synthetic ${r.size} px images (${r.classes.map((c) => c.name).join(', ')}), ${n} images.`, 'ok');
}

/** A number field's value; NaN when it is empty or not a number. */
function num(id: string): number {
  const v = ($(id) as HTMLInputElement).value.trim();
  return v === '' ? NaN : Number(v);
}

const SETTING_INPUTS: Record<SettingField, string> = { epochs: 'ft-epochs', lr: 'ft-lr', batchSize: 'ft-batch', inputSize: 'ft-size' };

function readSettings(): FinetuneSettings {
  return {
    epochs: num('ft-epochs'), lr: num('ft-lr'), batchSize: num('ft-batch'), inputSize: num('ft-size'),
    augment: ($('ft-augment') as HTMLSelectElement).value as FinetuneSettings['augment'],
    backbone: ($('ft-backbone') as HTMLSelectElement).value as Backbone, seed: 0,
  };
}

/**
 * Checks the settings against the classes' images: each problem at its field (and the field
 * marked invalid), the validation split in words. Returns the problems (none: a run may start).
 */
function checkSettings(): string[] {
  const counts = classes.map((c) => c.files.length);
  const held = heldOutCounts(counts);
  const total = counts.reduce((a, b) => a + b, 0);
  const heldOut = held.reduce((a, b) => a + b, 0);
  const problems = settingProblems(readSettings(), total - heldOut);
  for (const [field, id] of Object.entries(SETTING_INPUTS) as [SettingField, string][]) {
    const text = problems[field] ?? '';
    $(id).setAttribute('aria-invalid', String(text !== ''));
    say(`${id}-msg`, text, 'error');
  }
  $('ft-split').textContent = total === 0 ? ''
    : heldOut > 0 ? `${heldOut} of ${total} images held out for validation (a fifth of each class, by seed): the accuracy is theirs.`
      : `No validation split (it needs ${MIN_PER_CLASS_FOR_SPLIT} images in every class): the accuracy is on the training images.`;
  return Object.values(problems);
}

async function finetune(): Promise<void> {
  if (!summary) {
    say('ft-msg', `${NO_CHECKPOINT} (Open, at the top): fine-tuning starts from its weights.`, 'error');
    return;
  }
  const req = { classes: classes.map((c) => ({ name: c.name.value, files: c.files })), settings: readSettings() };
  const names = req.classes.map((c) => c.name.trim());
  const problems = checkSettings();
  const bad = req.classes.length < 2 ? 'add at least two classes'
    : names.some((n) => n === '') ? 'give every class a name'
      : new Set(names).size !== names.length ? 'two classes have the same name'
        : req.classes.some((c) => c.files.length === 0) ? `class '${names[req.classes.findIndex((c) => c.files.length === 0)]}' has no images`
          : problems.length > 0 ? `check the setting${problems.length > 1 ? 's' : ''} marked above: ${problems[0]}` : null;
  if (bad) {
    say('ft-msg', bad, 'error');
    return;
  }
  const onVal = heldOutCounts(req.classes.map((c) => c.files.length)).some((n) => n > 0) ? 'val' : 'train';
  lossPoints = [];
  totalSteps = 0;
  const plot = $('ft-plot') as HTMLCanvasElement;
  plot.hidden = false;
  const epochMarks: EpochMark[] = [];
  drawLossPlot(plot, lossPoints, 1, epochMarks, onVal);
  const cancel = $('ft-cancel') as HTMLButtonElement;
  let cancelled = false;
  cancel.onclick = () => {
    cancelled = true;
    cancel.disabled = true;
    backend.cancel();
    progress('ft-progress', 'cancelling at the next batch...', 0, 0);
  };
  let lastStep = 0;
  const accuracy = () => (epochMarks.length ? `; ${onVal} top-1 ${epochMarks[epochMarks.length - 1].top1.toFixed(0)}% after epoch ${epochMarks.length}` : '');
  const r = await task('ft-msg', async () => {
    cancel.disabled = false;
    progress('ft-progress', 'decoding images', 0, 0);
    try {
      return await backend.call('finetune', req, {
        progress: (stage, done, total) => progress('ft-progress', `${stage} ${done + 1} of ${total}`, done, total),
        step: (s) => {
          totalSteps = s.steps;
          lastStep = s.step;
          lossPoints.push({ step: s.step, loss: s.loss });
          if (!cancelled) progress('ft-progress', `epoch ${s.epoch}/${s.epochs}, step ${s.step}/${s.steps}: loss ${s.loss.toFixed(3)} (epoch ${s.epochLoss.toFixed(3)}), lr ${s.lr.toExponential(1)}, ${s.imagesPerSecond.toFixed(1)} images/s${accuracy()}`, s.step, s.steps);
          drawLossPlot(plot, lossPoints, totalSteps, epochMarks, onVal);
        },
        epoch: (e) => {
          epochMarks.push({ step: lastStep, top1: e.top1, loss: e.loss });
          drawLossPlot(plot, lossPoints, totalSteps, epochMarks, onVal);
        },
      });
    } finally {
      cancel.disabled = true;
    }
  });
  if (!r) {
    // Failed, or cancelled before the first step: the model is unchanged.
    progress('ft-progress', null);
    if (cancelled) say('ft-msg', 'Cancelled before the first step: the model is unchanged.', 'info');
    return;
  }
  summary = r.summary;
  renderSummary();
  const held = r.heldOut > 0 ? `, ${r.heldOut} held out for validation` : '';
  const skipped = r.skipped.length ? ` ${skippedText(r.skipped)}` : '';
  const last = r.epochs[r.epochs.length - 1];
  const lastWords = last ? `; epoch ${last.epoch}: loss ${last.loss.toFixed(3)}, ${onVal} top-1 ${last.top1.toFixed(0)}%` : '';
  if (r.stopped) {
    progress('ft-progress', `cancelled after step ${r.stopped.step} of ${r.stopped.steps} in ${r.seconds.toFixed(1)} s${lastWords}`, r.stopped.step, r.stopped.steps);
    say('ft-msg', `Cancelled after step ${r.stopped.step} of ${r.stopped.steps} (${r.images} images of ${r.classes.length} classes${held}): Classify uses the head as trained so far; Download checkpoint saves it.${skipped}`, r.skipped.length ? 'error' : 'info');
  } else {
    $('ft-bar').setAttribute('data-done', 'true');
    progress('ft-progress', `done: ${r.epochs.length} epochs, ${totalSteps} steps in ${r.seconds.toFixed(1)} s${lastWords}`, totalSteps, totalSteps);
    say('ft-msg', `Fine-tuned on ${r.images} images of ${r.classes.length} classes (${r.classes.join(', ')})${held}: Classify uses the new head.${skipped}`, r.skipped.length ? 'error' : 'ok');
  }
  ($('ft-download') as HTMLButtonElement).hidden = false;
  if (classifyFiles.length > 0) await classify(classifyFiles);
}

function downloadBytes(bytes: Uint8Array, name: string, type = 'application/octet-stream'): void {
  const url = URL.createObjectURL(new Blob([bytes as Uint8Array<ArrayBuffer>], { type }));
  const a = h('a', { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

async function download(): Promise<void> {
  const r = await task('ft-msg', () => backend.call('download', {}));
  if (!r) return;
  downloadBytes(r.bytes, r.fileName);
  say('ft-msg', `Saved ${r.fileName} (${(r.bytes.length / 1e6).toFixed(2)} MB): node dist/cli/main.js predict --checkpoint ${r.fileName} IMAGE`, 'ok');
}

// ---- wiring ---------------------------------------------------------------------------------

$('device').addEventListener('change', (ev) => void chooseDevice((ev.target as HTMLSelectElement).value as Device));
offerGpu(null);
dropZone($('open-drop'), [$('open-input') as HTMLInputElement, $('open-folder') as HTMLInputElement], 1, (f) => void open(f));
dropZone($('classify-drop'), [$('classify-input') as HTMLInputElement], 4, (f) => void classify(f.map((x) => x.file)));
dropZone($('rec-drop'), [$('rec-input') as HTMLInputElement], 4, (f) => void reconstruct(f.map((x) => x.file)));
dropZone($('ft-folder-drop'), [$('ft-folder') as HTMLInputElement], 4, takeClassFolders);
$('ft-add').addEventListener('click', () => addClass().name.focus());
$('ft-sample').addEventListener('click', () => void takeSample());
$('ft-clear').addEventListener('click', () => {
  for (const c of classes.splice(0)) c.el.remove();
  addClass();
  addClass();
  say('ft-msg', '');
  checkSettings();
});
$('ft-start').addEventListener('click', () => void finetune());
for (const id of Object.values(SETTING_INPUTS)) $(id).addEventListener('input', () => checkSettings());
// An error line is about what was done before: it goes when the user next acts in its section
// (a button, a changed field, a drop), before that action says how it went.
for (const [section, msg] of [['open', 'open-msg'], ['classify', 'classify-msg'], ['reconstruct', 'rec-msg'], ['finetune', 'ft-msg']]) {
  const el = $(section);
  el.addEventListener('change', () => clearError(msg), true);
  el.addEventListener('drop', () => clearError(msg), true);
  el.addEventListener('click', (ev) => {
    if (ev.target instanceof Element && ev.target.closest('button, label.button, label.drop')) clearError(msg);
  }, true);
}
$('ft-download').addEventListener('click', () => void download());
$('rec-remask').addEventListener('click', () => {
  reconstructSeed++;
  void reconstruct(reconstructFiles);
});
// A drop outside the zones must not open the file in the tab.
window.addEventListener('dragover', (ev) => ev.preventDefault());
window.addEventListener('drop', (ev) => ev.preventDefault());
addClass();
addClass();
checkSettings();
setBusy(false);
