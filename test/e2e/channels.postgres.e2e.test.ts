import { realServers } from '../helpers/real.ts';
import { channelsE2E } from './channels-contract.ts';

channelsE2E('postgres', realServers(['postgres', 'mosquitto']).skip);
