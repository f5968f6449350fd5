import { realServers } from '../helpers/real.ts';
import { channelsContract } from './channels-contract.ts';

channelsContract('postgres', realServers(['postgres', 'mosquitto']).skip);
