/**
 * Weights by name: `facebook/convnextv2-atto-1k-224`, `timm/convnextv2_atto.fcmae_ft_in1k`,
 * `hf-hub:timm/convnextv2_atto.fcmae_ft_in1k` (timm's form), each with an optional
 * `@revision` (branch, tag or commit). They resolve to a snapshot folder of the local Hugging
 * Face cache, laid out as huggingface_hub writes it (shared with Python's transformers and
 * timm): `HF_HUB_CACHE`, else `HF_HOME/hub`, else `~/.cache/huggingface/hub`, then
 * `models--ORG--NAME/refs/REVISION` (the commit) and `snapshots/COMMIT/` (files, usually
 * symlinks into `blobs/`). A repository not in the cache is downloaded into it with Hugging
 * Face's own JavaScript client (@huggingface/hub) unless `HF_HUB_OFFLINE=1`; `HF_TOKEN` is
 * passed for gated or private repositories.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as nodePath from 'node:path';
import { ConvNextError, errorLine } from '../errors.js';

export interface HubRef {
  /** 'org/name'. */
  repo: string;
  /** Branch, tag or 40-hex commit ('main' by default). */
  revision: string;
}

const REPO = /^[A-Za-z0-9][A-Za-z0-9._-]*\/[A-Za-z0-9][A-Za-z0-9._-]*$/;

/** The hub reference a checkpoint argument names, or null (a local path, or not of that form). */
export function parseHubId(spec: string): HubRef | null {
  const explicit = spec.startsWith('hf-hub:');
  const body = explicit ? spec.slice('hf-hub:'.length) : spec;
  // A path that exists locally always wins over a hub name.
  if (!explicit && fs.existsSync(spec)) return null;
  const at = body.indexOf('@');
  const repo = at >= 0 ? body.slice(0, at) : body;
  const revision = at >= 0 ? body.slice(at + 1) : 'main';
  if (!REPO.test(repo) || revision === '' || /[\\/]\.\.|^\.\./.test(revision)) {
    if (explicit) throw new ConvNextError(`${spec}: not a Hugging Face repository id (hf-hub:ORG/NAME[@REVISION])`, 2);
    return null;
  }
  return { repo, revision };
}

/** The huggingface_hub cache folder: HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub. */
export function hubCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.HF_HUB_CACHE) return env.HF_HUB_CACHE;
  const home = env.HF_HOME || nodePath.join(env.XDG_CACHE_HOME || nodePath.join(os.homedir(), '.cache'), 'huggingface');
  return nodePath.join(home, 'hub');
}

/** Weight files in the order they are looked for (the first one present is read). */
export const HUB_WEIGHT_FILES = ['model.safetensors', 'model.safetensors.index.json', 'pytorch_model.bin', 'pytorch_model.bin.index.json'];
const HUB_SIDE_FILES = ['config.json', 'preprocessor_config.json'];

const repoFolder = (cache: string, repo: string) => nodePath.join(cache, `models--${repo.replace('/', '--')}`);

/** The cached snapshot folder of `ref` holding weights, or null. */
export function cachedSnapshot(ref: HubRef, cache = hubCacheDir()): string | null {
  const root = repoFolder(cache, ref.repo);
  let commit = ref.revision;
  if (!/^[0-9a-f]{40}$/.test(commit)) {
    const refFile = nodePath.join(root, 'refs', ref.revision);
    if (!fs.existsSync(refFile)) return null;
    commit = fs.readFileSync(refFile, 'utf8').trim();
  }
  const snap = nodePath.join(root, 'snapshots', commit);
  return HUB_WEIGHT_FILES.some((f) => fs.existsSync(nodePath.join(snap, f))) ? snap : null;
}

/**
 * The local folder of a checkpoint argument: itself when it is a local path (or no hub id);
 * for a hub id the cached snapshot, downloaded first when missing and allowed.
 */
export async function resolveCheckpointArg(spec: string, log: (line: string) => void = () => undefined): Promise<string> {
  const ref = parseHubId(spec);
  if (!ref) return spec;
  const cache = hubCacheDir();
  const hit = cachedSnapshot(ref, cache);
  if (hit) return hit;
  const shown = `${ref.repo}${ref.revision === 'main' ? '' : `@${ref.revision}`}`;
  if (process.env.HF_HUB_OFFLINE === '1' || process.env.HF_HUB_OFFLINE === 'true') {
    throw new ConvNextError(`${spec}: not a local path, and ${shown} is not in the Hugging Face cache ${cache} (HF_HUB_OFFLINE is set, so it is not downloaded)`);
  }
  return download(ref, cache, shown, log);
}

async function download(ref: HubRef, cache: string, shown: string, log: (line: string) => void): Promise<string> {
  let hub: typeof import('@huggingface/hub');
  try {
    hub = await import('@huggingface/hub');
  } catch {
    throw new ConvNextError(`${shown}: not in the Hugging Face cache ${cache}, and @huggingface/hub (to download it) is not installed`);
  }
  const creds = process.env.HF_TOKEN ? { accessToken: process.env.HF_TOKEN } : {};
  const common = { repo: { type: 'model' as const, name: ref.repo }, revision: ref.revision, cacheDir: cache, ...creds };
  let files: string[];
  try {
    files = [];
    for await (const f of hub.listFiles({ repo: common.repo, revision: ref.revision, ...creds })) if (f.type === 'file') files.push(f.path);
  } catch (e) {
    throw new ConvNextError(`${shown}: not in the Hugging Face cache ${cache}, and listing it on the Hub failed (${errorLine(e)}); offline, put it in the cache or give a local path`);
  }
  const weights = HUB_WEIGHT_FILES.find((f) => files.includes(f));
  if (!weights) throw new ConvNextError(`${shown}: the repository has none of ${HUB_WEIGHT_FILES.join(', ')}`);
  const wanted = [...HUB_SIDE_FILES.filter((f) => files.includes(f)), weights];
  if (weights.endsWith('.index.json')) {
    // Sharded weights: the index names the shards.
    const index = await hub.downloadFileToCacheDir({ ...common, path: weights });
    const map = (JSON.parse(fs.readFileSync(index, 'utf8')) as { weight_map?: Record<string, string> }).weight_map ?? {};
    wanted.push(...new Set(Object.values(map)));
  }
  let snapshot = '';
  for (const [i, path] of wanted.entries()) {
    log(`convnextv2: downloading ${shown}/${path} (${i + 1}/${wanted.length}) into ${cache}`);
    try {
      snapshot = nodePath.dirname(await hub.downloadFileToCacheDir({ ...common, path }));
    } catch (e) {
      throw new ConvNextError(`${shown}: downloading ${path} failed (${errorLine(e)})`);
    }
  }
  return snapshot;
}
