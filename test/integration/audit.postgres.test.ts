import { realServers } from '../helpers/real.ts';
import { auditContract } from './audit-contract.ts';

auditContract('postgres', realServers(['postgres', 'mosquitto']).skip);
