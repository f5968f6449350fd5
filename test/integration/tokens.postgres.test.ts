import { realServers } from '../helpers/real.ts';
import { tokensContract } from './tokens-contract.ts';

tokensContract('postgres', realServers(['postgres', 'mosquitto']).skip);
