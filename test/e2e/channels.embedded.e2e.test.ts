import { channelsE2E } from './channels-contract.ts';

channelsE2E('embedded', false);
