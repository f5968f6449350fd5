import { realServers } from '../helpers/real.ts';
import { shadowContract } from './shadow-contract.ts';

shadowContract('postgres', realServers(['postgres', 'mosquitto']).skip);
