/**
 * What a run folder shows besides its log and checkpoints: curve PNGs redrawn from log.jsonl
 * after every epoch (loss.png, lr.png and, for fine-tuning, accuracy.png) and a README.txt that
 * says what each file is.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeBytesAtomicSync } from '../io/atomic.js';
import { linePlot, type Series } from '../viz/plot.js';

export type RunKind = 'pretrain' | 'finetune';

/** The curve files of a run folder, by kind (the overwrite rule of runlog.ts removes them with the run). */
export const CURVE_FILES = ['loss.png', 'lr.png', 'accuracy.png'] as const;

const README: Record<RunKind, string> = {
  pretrain: `A convnextv2 FCMAE pre-training run (convnextv2 pretrain).

checkpoint-last.safetensors  the encoder, the decoder, the AdamW moments and where the run stands
                             (epoch, step, its arguments); --resume continues from it exactly,
                             finetune --init starts from its encoder
log.jsonl                    one JSON record per epoch: loss, lr, images/s, the schedule
loss.png, lr.png             the loss and the learning rate per epoch, redrawn after each epoch
reconstruction-epochNNN.png  image | masked | reconstruction for a few validation images
README.txt                   this file
`,
  finetune: `A convnextv2 fine-tuning run (convnextv2 finetune).

checkpoint-last.safetensors  the weights, the AdamW moments, the EMA and where the run stands
                             (epoch, step, its arguments); --resume continues from it exactly
checkpoint-best.safetensors  the weights (and EMA) at the best validation top-1 so far; what
                             eval, predict and convert read when given this folder
log.jsonl                    one JSON record per epoch: loss, lr, validation top-1/top-5/loss,
                             images/s, the schedule
loss.png, lr.png,            training and validation loss, learning rate, validation top-1 and
accuracy.png                 top-5 per epoch, redrawn after each epoch
README.txt                   this file
(eval --checkpoint THIS_FOLDER adds per-class-*.csv, confusion-*.csv and confusion-*.png)
`,
};

export function runReadme(kind: RunKind): string {
  return README[kind];
}

/** Redraws the run's curves from its log.jsonl. */
export function writeRunCurves(out: string, kind: RunKind): void {
  const log = readFileSync(join(out, 'log.jsonl'), 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, number>);
  if (log.length === 0) return;
  const series = (label: string, key: string): Series[] => (log.some((r) => typeof r[key] === 'number') ? [{ label, points: log.filter((r) => typeof r[key] === 'number').map((r) => [r.epoch, r[key]] as [number, number]) }] : []);
  const plot = (file: string, title: string, yLabel: string, s: Series[]) => {
    if (s.length > 0) writeBytesAtomicSync(join(out, file), linePlot({ title, xLabel: 'epoch', yLabel, width: 640, height: 400, series: s }));
  };
  const what = kind === 'pretrain' ? 'FCMAE pre-training' : 'fine-tuning';
  plot('loss.png', `${what}: loss per epoch`, 'loss', [...series(kind === 'pretrain' ? 'train (norm-pix MSE, removed patches)' : 'train', 'loss'), ...series('validation', 'val_loss'), ...series('validation, EMA', 'ema_loss')]);
  plot('lr.png', `${what}: learning rate (end of epoch)`, 'lr', series('lr', 'lr'));
  if (kind === 'finetune') plot('accuracy.png', 'fine-tuning: validation accuracy (%)', 'accuracy (%)', [...series('top-1', 'val_top1'), ...series('top-5', 'val_top5'), ...series('top-1, EMA', 'ema_top1')]);
}
