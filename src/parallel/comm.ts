/**
 * The processes of a data-parallel job (platform-neutral): a `Comm` says which rank this
 * process is of how many, and moves float buffers between them. `connect()` (./mpi.ts, Node)
 * gives MPI's MPI_COMM_WORLD under a launcher, else `singleProcess`.
 *
 * Sums are never left to MPI_Allreduce, whose summation order depends on the rank count and
 * the algorithm: the collectives here move data, and the callers add it in a fixed order
 * (GradientSum), which is what makes N ranks bit-identical to one process.
 */
export interface Comm {
  readonly rank: number;
  readonly size: number;
  /** 'single process', or 'Open MPI v4.1.4 (libmpi.so.40), 2 ranks'. */
  readonly description: string;
  /** Block r of `send` (count floats) goes to rank r; block r of `recv` comes from rank r. */
  alltoall(send: Float32Array, recv: Float32Array, count: number): void;
  /** recv block r = rank r's `send` (count floats). */
  allgather(send: Float32Array, recv: Float32Array, count: number): void;
  barrier(): void;
  /** Ends MPI (once; a no-op for the single process). */
  finalize(): void;
  /** Ends the whole job with `code` (every rank). */
  abort(code: number): never;
}

/** The single process: size 1, the collectives are copies. */
export const singleProcess: Comm = {
  rank: 0,
  size: 1,
  description: 'single process',
  alltoall(send, recv, count) {
    recv.set(send.subarray(0, count));
  },
  allgather(send, recv, count) {
    recv.set(send.subarray(0, count));
  },
  barrier() {},
  finalize() {},
  abort(code): never {
    const p = (globalThis as { process?: { exit(code: number): never } }).process;
    if (p) p.exit(code);
    throw new Error(`abort(${code})`);
  },
};

/** Every rank's `bytes` (any lengths), in rank order. */
export function allgatherBytes(comm: Comm, bytes: Uint8Array): Uint8Array[] {
  if (comm.size === 1) return [bytes.slice()];
  const lens = new Float32Array(comm.size);
  comm.allgather(Float32Array.of(bytes.length), lens, 1);
  const max = Math.max(...lens);
  const words = Math.ceil(max / 4);
  const send = new Uint8Array(words * 4);
  send.set(bytes);
  // Raw words: MPI moves the bits (no float arithmetic touches them).
  const recv = new Float32Array(words * comm.size);
  comm.allgather(new Float32Array(send.buffer), recv, words);
  const u8 = new Uint8Array(recv.buffer);
  return Array.from(lens, (n, r) => u8.slice(r * words * 4, r * words * 4 + n));
}

/** Every rank's JSON-serialisable value, in rank order. */
export function allgatherJson<T>(comm: Comm, value: T): T[] {
  const enc = new TextEncoder(), dec = new TextDecoder();
  return allgatherBytes(comm, enc.encode(JSON.stringify(value))).map((b) => JSON.parse(dec.decode(b)) as T);
}
