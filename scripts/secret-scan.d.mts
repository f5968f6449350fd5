/** See secret-scan.mjs. */
export function scanLedger(dir: string): { secrets: number; files: number; bytes: number; hits: string[] };
