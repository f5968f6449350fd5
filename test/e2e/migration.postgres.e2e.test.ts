import { realServers } from '../helpers/real.ts';
import { migrationE2E } from './migration-contract.ts';

migrationE2E('postgres', realServers(['postgres', 'mosquitto']).skip);
