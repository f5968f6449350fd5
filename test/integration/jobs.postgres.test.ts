import { realServers } from '../helpers/real.ts';
import { jobsContract } from './jobs-contract.ts';

jobsContract('postgres', realServers(['postgres', 'mosquitto']).skip);
