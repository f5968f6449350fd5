import { realServers } from '../helpers/real.ts';
import { dynsecMissingReason } from '../helpers/mosquitto-dynsec.ts';
import { isolationContract } from './isolation-contract.ts';

const real = realServers(['postgres', 'mosquitto']);
isolationContract('dynsec', real.skip || (dynsecMissingReason() ?? false));
