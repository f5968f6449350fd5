import { migrationE2E } from './migration-contract.ts';

migrationE2E('embedded', false);
