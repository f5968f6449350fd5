import { tokensContract } from './tokens-contract.ts';

tokensContract('embedded', false);
