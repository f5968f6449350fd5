/** Machine facts and result files for benchmarks (`bench/results/<name>.json`, git-ignored). */
import { mkdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const RESULTS_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', 'results');

export interface MachineInfo {
  cpus: number;
  cpuModel: string;
  totalMemMiB: number;
  node: string;
  platform: string;
  release: string;
  loadAvg: number[];
}

export function machineInfo(): MachineInfo {
  const cpus = os.cpus();
  return {
    cpus: cpus.length,
    cpuModel: cpus[0]?.model ?? 'unknown',
    totalMemMiB: Math.round(os.totalmem() / 2 ** 20),
    node: process.version,
    platform: os.platform(),
    release: os.release(),
    loadAvg: os.loadavg().map((x) => Math.round(x * 100) / 100),
  };
}

/** Writes `data` as pretty JSON to `bench/results/<name>.json` and returns the path. */
export async function writeResult(name: string, data: unknown): Promise<string> {
  const file = join(RESULTS_DIR, `${name}.json`);
  await mkdir(dirname(file), { recursive: true });
  await writeFile(file, `${JSON.stringify(data, null, 2)}\n`);
  return file;
}
