// The run lifecycle (src/train/run.ts) that finetune and pretrain call, on an in-memory folder:
// the order of its steps, a resumed run's log kept up to its epoch, --stop-after, a follower rank
// that writes nothing, and the close step on an error.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runTraining, type RunFolder } from '../src/train/run.js';

function memoryFolder(log: string[]): RunFolder & { records: object[] } {
  const records: object[] = [];
  return {
    records,
    open: (resuming) => log.push(`open ${resuming ? 'resuming' : 'new'}`),
    keepLogUpTo: (epoch) => log.push(`keep ${epoch}`),
    appendLog: (r) => {
      records.push(r);
      log.push(`log ${(r as { epoch: number }).epoch}`);
    },
  };
}

test('a resumed run: folder kept, log cut at the resumed epoch, epochs after it, each logged, saved, reported; stopAfter; closed', async () => {
  const log: string[] = [];
  const folder = memoryFolder(log);
  const records = await runTraining<number>({
    epochs: 5, startEpoch: 2, resuming: true, stopAfter: 4, lead: true, folder,
    ready: () => log.push('ready'),
    runEpoch: async (e) => (log.push(`epoch ${e}`), e * 10),
    record: (e, r) => ({ epoch: e, loss: r }),
    save: async (e) => (log.push(`save ${e}`), e % 2 === 0),
    onEpoch: (e, _r, _rec, saved) => log.push(`say ${e}${saved ? ' saved' : ''}`),
    close: () => void log.push('close'),
  });
  assert.deepEqual(log, ['open resuming', 'keep 2', 'ready', 'epoch 3', 'log 3', 'save 3', 'say 3', 'epoch 4', 'log 4', 'save 4', 'say 4 saved', 'close']);
  assert.deepEqual(records, [{ epoch: 3, loss: 30 }, { epoch: 4, loss: 40 }]);
});

test('a follower rank trains but writes nothing; an epoch that throws still closes the run', async () => {
  const log: string[] = [];
  const folder = memoryFolder(log);
  await runTraining<number>({
    epochs: 2, startEpoch: 0, resuming: false, lead: false, folder,
    runEpoch: async (e) => (log.push(`epoch ${e}`), e),
    record: (e) => ({ epoch: e }),
    save: async () => assert.fail('a follower saves nothing'),
    close: () => void log.push('close'),
  });
  assert.deepEqual(log, ['epoch 1', 'epoch 2', 'close']);
  const log2: string[] = [];
  await assert.rejects(runTraining<number>({
    epochs: 3, startEpoch: 0, resuming: false, lead: true, folder: memoryFolder(log2),
    runEpoch: async (e) => {
      if (e === 2) throw new Error('loss is nan');
      return e;
    },
    record: (e) => ({ epoch: e }),
    save: async () => true,
    close: () => void log2.push('close'),
  }), /loss is nan/);
  assert.deepEqual(log2, ['open new', 'keep 0', 'log 1', 'close']);
});
