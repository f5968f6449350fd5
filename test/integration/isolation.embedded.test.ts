import { isolationContract } from './isolation-contract.ts';

isolationContract('embedded', false);
