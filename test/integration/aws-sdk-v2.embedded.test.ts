import { awsSdkV2Contract } from './aws-sdk-v2-contract.ts';

awsSdkV2Contract('embedded', false);
