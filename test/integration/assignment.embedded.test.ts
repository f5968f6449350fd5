import { assignmentContract } from './assignment-contract.ts';

assignmentContract('embedded', false);
