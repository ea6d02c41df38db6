/** Class names from a --labels file (Node). */
import * as fs from 'node:fs';
import { ConvNextError } from '../errors.js';
import { type ClassNames, parseLabelsText } from './labels.js';

/** Reads class names from a file (see {@link parseLabelsText}); must give `n` names. */
export function readLabelsFile(path: string, n: number): string[] {
  let text: string;
  try {
    text = fs.readFileSync(path, 'utf8');
  } catch {
    throw new ConvNextError(`--labels ${path}: cannot read it`);
  }
  return parseLabelsText(text, n, path);
}

/** A --labels file's names for a head of `n` outputs, or undefined when no file is given. */
export function labelsArg(path: string | undefined, n: number): ClassNames | undefined {
  return path === undefined ? undefined : { names: readLabelsFile(path, n), source: path };
}
