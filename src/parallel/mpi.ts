/**
 * MPI under a launcher (Node): `mpirun` / `mpiexec` / `srun` start the ranks, and libmpi is
 * found at run time (native/mpi.cc dlopens Open MPI's libmpi.so.40 or MPICH's
 * libmpich.so.12: nothing MPI is needed to build or install). Without a launcher, connect()
 * returns the single process and MPI is not touched at all.
 */
import { createRequire } from 'node:module';
import { ConvNextError } from '../errors.js';
import { addonPath } from '../kernels/native.js';
import { type Comm, singleProcess } from './comm.js';

/** What the launcher's environment says about this process, or null (no launcher). */
export interface LaunchInfo {
  launcher: 'Open MPI' | 'MPICH / Hydra' | 'Slurm' | 'PMIx';
  rank: number;
  size: number;
}

/** The launcher from the environment it sets for each rank (Open MPI's mpirun, Hydra's mpiexec, srun). */
export function launchInfo(env: NodeJS.ProcessEnv = process.env): LaunchInfo | null {
  const num = (v: string | undefined) => (v !== undefined && /^\d+$/.test(v) ? Number(v) : null);
  const ompi = [num(env.OMPI_COMM_WORLD_RANK), num(env.OMPI_COMM_WORLD_SIZE)];
  if (ompi[0] !== null && ompi[1] !== null) return { launcher: 'Open MPI', rank: ompi[0], size: ompi[1] };
  const pmi = [num(env.PMI_RANK), num(env.PMI_SIZE)];
  if (pmi[0] !== null && pmi[1] !== null) return { launcher: 'MPICH / Hydra', rank: pmi[0], size: pmi[1] };
  const slurm = [num(env.SLURM_PROCID), num(env.SLURM_NTASKS) ?? num(env.SLURM_NPROCS)];
  if (slurm[0] !== null && slurm[1] !== null && (env.PMIX_RANK !== undefined || env.PMI_FD !== undefined || env.SLURM_STEP_ID !== undefined)) {
    return { launcher: 'Slurm', rank: slurm[0], size: slurm[1] };
  }
  const pmix = [num(env.PMIX_RANK), num(env.PMIX_SIZE)];
  if (pmix[0] !== null && pmix[1] !== null) return { launcher: 'PMIx', rank: pmix[0], size: pmix[1] };
  return null;
}

/** native/mpi.cc: Comm's collectives over MPI_COMM_WORLD, once loaded and initialised. */
interface MpiAddon extends Pick<Comm, 'alltoall' | 'allgather' | 'barrier' | 'finalize' | 'abort'> {
  load(names: string[]): { lib: string; impl: 'openmpi' | 'mpich'; version?: string } | { error: string };
  init(timeoutSeconds: number): { rank: number; size: number };
}

/** The libraries to try for a launcher, best first (CONVNEXTV2_MPI_LIB first when set). */
export function libraryCandidates(l: LaunchInfo | null, env: NodeJS.ProcessEnv = process.env): string[] {
  const ompi = ['libmpi.so.40', 'libmpi.so'];
  const mpich = ['libmpich.so.12', 'libmpi.so.12'];
  const list = l?.launcher === 'Open MPI' ? ompi : l?.launcher === 'MPICH / Hydra' ? mpich : [...ompi, ...mpich];
  return env.CONVNEXTV2_MPI_LIB ? [env.CONVNEXTV2_MPI_LIB, ...list] : list;
}

let active: Comm | null = null;

export interface ConnectOptions {
  /** Seconds a collective may take before the job is aborted (a dead or hung rank); default 300. */
  timeoutSeconds?: number;
}

/**
 * This process's Comm: MPI when a launcher started it (loaded and initialised once; MPI is
 * finalised at exit), else the single process. A launcher whose libmpi cannot be loaded, or
 * one implementation's libmpi under the other's launcher (every rank would see size 1), is a
 * one-line error.
 */
export function connect(opts: ConnectOptions = {}): Comm {
  if (active) return active;
  const l = launchInfo();
  if (!l || l.size <= 1) {
    active = singleProcess;
    return active;
  }
  // MPICH's UCX layer installs a SIGSEGV handler that breaks V8's WebAssembly trap handling.
  if (process.env.UCX_ERROR_SIGNALS === undefined) process.env.UCX_ERROR_SIGNALS = '';
  const require = createRequire(import.meta.url);
  const addon = (require(addonPath) as { mpi?: MpiAddon }).mpi;
  if (!addon) throw new ConvNextError(`mpi: the native addon (${addonPath}) has no MPI support: rebuild it (npm run build)`);
  const names = libraryCandidates(l);
  const lib = addon.load(names);
  if ('error' in lib) {
    throw new ConvNextError(`mpi: started by ${l.launcher} as rank ${l.rank} of ${l.size}, but no MPI library loads (${names.join(', ')}: ${lib.error}); install the launcher's MPI (apt-get install openmpi-bin) or set CONVNEXTV2_MPI_LIB`);
  }
  const { rank, size } = addon.init(opts.timeoutSeconds ?? 300);
  const version = lib.version?.replace(/\s+/g, ' ').trim();
  const what = `${version || (lib.impl === 'openmpi' ? 'Open MPI' : 'MPICH')} from ${lib.lib}`;
  if (size !== l.size || rank !== l.rank) {
    addon.finalize();
    throw new ConvNextError(`mpi: ${l.launcher} started rank ${l.rank} of ${l.size}, but ${what} sees rank ${rank} of ${size}: the libmpi of one MPI implementation under another's launcher (set CONVNEXTV2_MPI_LIB to the launcher's library)`);
  }
  let finalized = false;
  const comm: Comm = {
    rank,
    size,
    description: `${what}, ${size} ranks`,
    alltoall: addon.alltoall,
    allgather: addon.allgather,
    barrier: addon.barrier,
    finalize: () => {
      if (finalized) return;
      finalized = true;
      addon.finalize();
    },
    abort: (code) => addon.abort(code),
  };
  // Without MPI_Finalize, mpirun reports the job as failed.
  process.on('exit', () => comm.finalize());
  active = comm;
  return comm;
}

/** The Comm connect() made, or null (none yet). */
export function activeComm(): Comm | null {
  return active;
}

/** The job this process is part of: connect()'s Comm, else the single process. */
export function jobComm(): Comm {
  return active ?? singleProcess;
}

