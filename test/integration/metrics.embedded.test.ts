import { metricsContract } from './metrics-contract.ts';

metricsContract('embedded', false);
