import { realServers } from '../helpers/real.ts';
import { jobsE2E } from './jobs-e2e-contract.ts';

jobsE2E('postgres', realServers(['postgres', 'mosquitto']).skip);
