/** PNG files on disk (Node). */
import '../io/codecs_node.js';
import { writeBytesAtomicSync } from '../io/atomic.js';
import { encodePng, type RasterImage } from './png.js';

/** Writes `img` as a PNG file atomically (temporary file, fsync, rename). */
export function writePng(path: string, img: RasterImage): void {
  writeBytesAtomicSync(path, encodePng(img));
}
