import { channelsContract } from './channels-contract.ts';

channelsContract('embedded', false);
