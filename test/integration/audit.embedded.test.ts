import { auditContract } from './audit-contract.ts';

auditContract('embedded', false);
