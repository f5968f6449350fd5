import { realServers } from '../helpers/real.ts';
import { metricsContract } from './metrics-contract.ts';

metricsContract('postgres', realServers(['postgres', 'mosquitto']).skip);
