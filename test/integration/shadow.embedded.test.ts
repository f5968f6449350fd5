import { shadowContract } from './shadow-contract.ts';

shadowContract('embedded', false);
