import { realServers } from '../helpers/real.ts';
import { assignmentContract } from './assignment-contract.ts';

assignmentContract('postgres', realServers(['postgres', 'mosquitto']).skip);
