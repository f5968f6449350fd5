import { jobsE2E } from './jobs-e2e-contract.ts';

jobsE2E('embedded', false);
