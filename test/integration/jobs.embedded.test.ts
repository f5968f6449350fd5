import { jobsContract } from './jobs-contract.ts';

jobsContract('embedded', false);
