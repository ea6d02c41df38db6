/**
 * A tiny RGB raster for plots and image grids: fills, anti-aliased lines and polylines of any
 * width, rectangles, filled circles, image blits (nearest or bilinear scaling) and ASCII text
 * from built-in bitmap fonts (6x10, 7x13, 7x13 bold; integer scaling; optionally rotated).
 */
import { FONT_6X10, FONT_7X13, FONT_7X13_BOLD, type BitmapFont } from './font.js';
import { encodePng, type RasterImage } from './png.js';

export type Color = readonly [number, number, number];

export type FontName = 'small' | 'normal' | 'bold';

export interface TextOptions {
  font?: FontName;
  /** Integer magnification (default 1). */
  scale?: number;
  align?: 'left' | 'center' | 'right';
  baseline?: 'top' | 'middle' | 'bottom';
  /** Rotate 90 degrees counter-clockwise (reads bottom to top), about (x, y). */
  vertical?: boolean;
}

const FONTS: Record<FontName, BitmapFont> = { small: FONT_6X10, normal: FONT_7X13, bold: FONT_7X13_BOLD };
const glyphCache = new Map<BitmapFont, Uint8Array>();

function glyphBits(font: BitmapFont): Uint8Array {
  let g = glyphCache.get(font);
  if (!g) {
    // Hex to bytes without Node's Buffer (the canvas is platform-neutral: plots are drawn in browsers too).
    const hex = font.bits;
    g = new Uint8Array(hex.length >> 1);
    for (let i = 0; i < g.length; i++) g[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
    glyphCache.set(font, g);
  }
  return g;
}

export class Canvas {
  readonly data: Uint8Array;

  constructor(readonly width: number, readonly height: number, background: Color = [255, 255, 255]) {
    if (!(Number.isInteger(width) && Number.isInteger(height) && width > 0 && height > 0)) throw new RangeError(`bad canvas size ${width}x${height}`);
    this.data = new Uint8Array(width * height * 3);
    this.fill(background);
  }

  fill(color: Color): void {
    for (let i = 0; i < this.data.length; i += 3) {
      this.data[i] = color[0];
      this.data[i + 1] = color[1];
      this.data[i + 2] = color[2];
    }
  }

  /** Blends `color` over pixel (x, y) with opacity `alpha` in [0, 1]. */
  blend(x: number, y: number, color: Color, alpha = 1): void {
    if (x < 0 || y < 0 || x >= this.width || y >= this.height || alpha <= 0) return;
    const o = (y * this.width + x) * 3;
    if (alpha >= 1) {
      this.data[o] = color[0];
      this.data[o + 1] = color[1];
      this.data[o + 2] = color[2];
      return;
    }
    for (let c = 0; c < 3; c++) this.data[o + c] = Math.round(this.data[o + c] + (color[c] - this.data[o + c]) * alpha);
  }

  fillRect(x: number, y: number, w: number, h: number, color: Color, alpha = 1): void {
    const x0 = Math.max(0, Math.round(x));
    const y0 = Math.max(0, Math.round(y));
    const x1 = Math.min(this.width, Math.round(x + w));
    const y1 = Math.min(this.height, Math.round(y + h));
    for (let yy = y0; yy < y1; yy++) for (let xx = x0; xx < x1; xx++) this.blend(xx, yy, color, alpha);
  }

  /** A rectangle outline `lineWidth` pixels wide, inside the box. */
  strokeRect(x: number, y: number, w: number, h: number, color: Color, lineWidth = 1): void {
    this.fillRect(x, y, w, lineWidth, color);
    this.fillRect(x, y + h - lineWidth, w, lineWidth, color);
    this.fillRect(x, y, lineWidth, h, color);
    this.fillRect(x + w - lineWidth, y, lineWidth, h, color);
  }

  /** An anti-aliased line (pixel centres at integer + 0.5). */
  line(x0: number, y0: number, x1: number, y1: number, color: Color, width = 1): void {
    this.polyline([[x0, y0], [x1, y1]], color, width);
  }

  /**
   * An anti-aliased polyline of the given width with round joins: coverage is the max over
   * segments, so joints are not painted twice.
   */
  polyline(points: readonly (readonly [number, number])[], color: Color, width = 1): void {
    if (points.length === 0) return;
    const half = width / 2;
    const pad = half + 1;
    let bx0 = Infinity;
    let by0 = Infinity;
    let bx1 = -Infinity;
    let by1 = -Infinity;
    for (const [x, y] of points) {
      bx0 = Math.min(bx0, x);
      by0 = Math.min(by0, y);
      bx1 = Math.max(bx1, x);
      by1 = Math.max(by1, y);
    }
    const X0 = Math.max(0, Math.floor(bx0 - pad));
    const Y0 = Math.max(0, Math.floor(by0 - pad));
    const X1 = Math.min(this.width - 1, Math.ceil(bx1 + pad));
    const Y1 = Math.min(this.height - 1, Math.ceil(by1 + pad));
    if (X1 < X0 || Y1 < Y0) return;
    const cw = X1 - X0 + 1;
    const cov = new Float32Array(cw * (Y1 - Y0 + 1));
    const segs = points.length === 1 ? [[points[0], points[0]]] : points.slice(1).map((p, i) => [points[i], p]);
    for (const [[ax, ay], [qx, qy]] of segs) {
      const sx0 = Math.max(X0, Math.floor(Math.min(ax, qx) - pad));
      const sy0 = Math.max(Y0, Math.floor(Math.min(ay, qy) - pad));
      const sx1 = Math.min(X1, Math.ceil(Math.max(ax, qx) + pad));
      const sy1 = Math.min(Y1, Math.ceil(Math.max(ay, qy) + pad));
      const dx = qx - ax;
      const dy = qy - ay;
      const len2 = dx * dx + dy * dy;
      for (let y = sy0; y <= sy1; y++) {
        for (let x = sx0; x <= sx1; x++) {
          const px = x + 0.5 - ax;
          const py = y + 0.5 - ay;
          let t = len2 > 0 ? (px * dx + py * dy) / len2 : 0;
          t = t < 0 ? 0 : t > 1 ? 1 : t;
          const ex = px - t * dx;
          const ey = py - t * dy;
          const d = Math.sqrt(ex * ex + ey * ey);
          const c = Math.min(1, Math.max(0, half + 0.5 - d));
          const k = (y - Y0) * cw + (x - X0);
          if (c > cov[k]) cov[k] = c;
        }
      }
    }
    for (let y = Y0; y <= Y1; y++) {
      for (let x = X0; x <= X1; x++) {
        const c = cov[(y - Y0) * cw + (x - X0)];
        if (c > 0) this.blend(x, y, color, c);
      }
    }
  }

  /** A filled, anti-aliased disc. */
  circle(cx: number, cy: number, r: number, color: Color): void {
    this.polyline([[cx, cy]], color, 2 * r);
  }

  /** Width in pixels of `text` in `font` at `scale`. */
  textWidth(text: string, font: FontName = 'normal', scale = 1): number {
    return text.length * FONTS[font].width * scale;
  }

  textHeight(font: FontName = 'normal', scale = 1): number {
    return FONTS[font].height * scale;
  }

  /** Draws ASCII `text` (other characters as '?') anchored at (x, y). */
  text(x: number, y: number, text: string, color: Color, opts: TextOptions = {}): void {
    const font = FONTS[opts.font ?? 'normal'];
    const s = Math.max(1, Math.floor(opts.scale ?? 1));
    const bits = glyphBits(font);
    const tw = text.length * font.width * s;
    const th = font.height * s;
    const ax = opts.align === 'center' ? -tw / 2 : opts.align === 'right' ? -tw : 0;
    const ay = opts.baseline === 'middle' ? -th / 2 : opts.baseline === 'bottom' ? -th : 0;
    const ox = Math.round(ax);
    const oy = Math.round(ay);
    for (let i = 0; i < text.length; i++) {
      let code = text.charCodeAt(i);
      if (code < 32 || code > 126) code = 63;
      const g = (code - 32) * font.height;
      for (let row = 0; row < font.height; row++) {
        const byte = bits[g + row];
        if (!byte) continue;
        for (let col = 0; col < font.width; col++) {
          if (!(byte & (0x80 >> col))) continue;
          // Local coordinates (u right along the text, v down), then placed.
          const u = ox + (i * font.width + col) * s;
          const v = oy + row * s;
          for (let sy = 0; sy < s; sy++) {
            for (let sx = 0; sx < s; sx++) {
              if (opts.vertical) this.blend(Math.round(x) + v + sy, Math.round(y) - (u + sx), color);
              else this.blend(Math.round(x) + u + sx, Math.round(y) + v + sy, color);
            }
          }
        }
      }
    }
  }

  /**
   * Draws `src` (RGB or RGBA bytes, or grey with channels 1) scaled into the rectangle
   * (x, y, w, h), nearest-neighbour or bilinear; alpha is blended.
   */
  blit(src: { width: number; height: number; data: Uint8Array; channels?: 1 | 3 | 4 }, x: number, y: number, w = src.width, h = src.height, filter: 'nearest' | 'bilinear' = 'nearest'): void {
    const C = src.channels ?? 3;
    const px = (sx: number, sy: number, c: number): number => src.data[(sy * src.width + sx) * C + (C === 1 ? 0 : c)];
    const color: [number, number, number] = [0, 0, 0];
    for (let yy = 0; yy < h; yy++) {
      const ty = Math.round(y) + yy;
      if (ty < 0 || ty >= this.height) continue;
      for (let xx = 0; xx < w; xx++) {
        const tx = Math.round(x) + xx;
        if (tx < 0 || tx >= this.width) continue;
        let alpha = 1;
        if (filter === 'nearest') {
          const sx = Math.min(src.width - 1, Math.floor(((xx + 0.5) * src.width) / w));
          const sy = Math.min(src.height - 1, Math.floor(((yy + 0.5) * src.height) / h));
          for (let c = 0; c < 3; c++) color[c] = px(sx, sy, c);
          if (C === 4) alpha = px(sx, sy, 3) / 255;
        } else {
          const fx = Math.min(src.width - 1, Math.max(0, ((xx + 0.5) * src.width) / w - 0.5));
          const fy = Math.min(src.height - 1, Math.max(0, ((yy + 0.5) * src.height) / h - 0.5));
          const x0 = Math.floor(fx);
          const y0 = Math.floor(fy);
          const x1 = Math.min(src.width - 1, x0 + 1);
          const y1 = Math.min(src.height - 1, y0 + 1);
          const ax = fx - x0;
          const ay = fy - y0;
          const lerp = (c: number): number => {
            const top = px(x0, y0, c) * (1 - ax) + px(x1, y0, c) * ax;
            const bot = px(x0, y1, c) * (1 - ax) + px(x1, y1, c) * ax;
            return top * (1 - ay) + bot * ay;
          };
          for (let c = 0; c < 3; c++) color[c] = Math.round(lerp(c));
          if (C === 4) alpha = lerp(3) / 255;
        }
        this.blend(tx, ty, color, alpha);
      }
    }
  }

  toRaster(): RasterImage {
    return { width: this.width, height: this.height, channels: 3, data: this.data };
  }

  toPng(): Uint8Array {
    return encodePng(this.toRaster());
  }
}
