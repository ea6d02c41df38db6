/** The CLI's commands, in the order `convnextv2 --help` lists them, and the flags every command shares. */
import type { FlagSpecs } from './args.js';
import { analyze } from './analyze.js';
import { bench } from './bench.js';
import type { Command } from './command.js';
import { convert } from './convert.js';
import { demo } from './demo.js';
import { evalCommand } from './eval.js';
import { fcmaeLoss } from './fcmae_loss.js';
import { finetune } from './finetune.js';
import { forward } from './forward.js';
import { info } from './info.js';
import { inspect } from './inspect.js';
import { models } from './models.js';
import { embed, predict } from './predict.js';
import { pretrain } from './pretrain.js';

export const COMMANDS: Command[] = [forward, pretrain, finetune, evalCommand, predict, embed, fcmaeLoss, bench, demo, convert, inspect, models, analyze, info];

export const COMMON: FlagSpecs = {
  threads: { kind: 'int', help: 'worker threads (default: CONVNEXTV2_THREADS or all cores)' },
  device: { kind: 'string', help: 'where to compute: cpu (default), webgpu (a GPU through WebGPU; npm package webgpu in Node), or auto (a hardware GPU when there is one)' },
  quiet: { kind: 'boolean', help: 'no progress bars on stderr', negatable: false },
  json: { kind: 'boolean', help: 'print one JSON object as the last line of stdout (errors too)', negatable: false },
  help: { kind: 'boolean', help: 'show this help', negatable: false },
};
