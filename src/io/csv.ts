/** CSV as RFC 4180 writes it: a field is quoted when it holds a comma, a quote or a line break. */
export function csvRow(cells: readonly (string | number)[]): string {
  return cells.map((v) => (typeof v === 'string' && /[",\n\r]/.test(v) ? `"${v.replaceAll('"', '""')}"` : String(v))).join(',');
}

/** Rows as a file's bytes (UTF-8, one row a line). */
export function csvBytes(rows: readonly (readonly (string | number)[])[]): Uint8Array {
  return new TextEncoder().encode(rows.map(csvRow).join('\n') + '\n');
}
