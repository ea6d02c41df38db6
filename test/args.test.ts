// The CLI's "did you mean": a slip is suggested, a different word is not.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { didYouMean, parseArgs } from '../src/cli/args.js';

test('didYouMean: one slip in a short word, a third of the letters in a long one, swaps count once, nothing for a different word', () => {
  const flags = ['epochs', 'batch-size', 'update-freq', 'top-k', 'out', 'resume'];
  assert.equal(didYouMean('epoch', flags), 'epochs', 'a letter missing');
  assert.equal(didYouMean('epcohs', flags), 'epochs', 'two letters swapped: one edit');
  assert.equal(didYouMean('topk', flags), 'top-k');
  assert.equal(didYouMean('batch-szie', flags), 'batch-size');
  assert.equal(didYouMean('updte-frq', flags), 'update-freq', 'two edits in nine letters');
  assert.equal(didYouMean('bogus', flags), undefined, 'not a slip of any flag');
  assert.equal(didYouMean('o', flags), undefined, 'one letter is no evidence');
  assert.equal(didYouMean('ut', ['out', 'cut']), 'out', 'ties: the first candidate');
  assert.throws(() => parseArgs(['--resum'], { resume: { kind: 'string', help: '' } }, 'finetune'),
    /^ConvNextError: finetune: unknown flag --resum \(did you mean --resume\? see 'convnextv2 finetune --help'\)$/);
});
