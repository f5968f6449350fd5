/**
 * Applying an accepted `/update` to a stored shadow, and the reply messages in AWS's shapes
 * (reference §1.2–1.5): `update/accepted`, `update/delta`, `update/documents`, `get/accepted`, `delete/accepted`.
 */
import {
  cloneJson,
  computeDelta,
  mergeMetadata,
  mergeState,
  metadataFor,
  projectMetadata,
  utf8ByteLength,
  type Json,
  type JsonObject,
} from './shadow-merge.ts';
import {
  SHADOW_LIMITS,
  SHADOW_MESSAGES,
  shadowError,
  type ShadowErrorBody,
  type ShadowLimits,
  type UpdateShadowRequest,
} from './shadow-request.ts';

/** Stored state of a shadow; an absent section is empty. */
export interface ShadowState {
  desired?: JsonObject;
  reported?: JsonObject;
}

/** Metadata mirroring {@link ShadowState}: each leaf is `{timestamp}` (epoch seconds); an array → array of those. */
export interface ShadowMetadata {
  desired?: JsonObject;
  reported?: JsonObject;
}

/** A shadow as stored (no delta; the delta is derived). `version` starts at 1 and rises by 1 per update. */
export interface ShadowDocument {
  state: ShadowState;
  metadata: ShadowMetadata;
  version: number;
}

/** A deleted shadow whose version numbering continues on re-creation (`version` = its last version). */
export interface DeletedShadow {
  deleted: true;
  version: number;
}

/** `…/update/accepted`: only what the request sent (nulls kept), its metadata, the new version. */
export interface UpdateAcceptedMessage {
  state: { desired?: JsonObject | null; reported?: JsonObject | null };
  metadata: { desired?: Json; reported?: Json };
  version: number;
  /** Epoch seconds. */
  timestamp: number;
  clientToken?: string;
}

/** `…/update/delta`: the whole current delta (flat, no desired/reported wrapper) and its desired metadata. */
export interface ShadowDeltaMessage {
  state: JsonObject;
  metadata: JsonObject;
  version: number;
  /** Epoch seconds. */
  timestamp: number;
  clientToken?: string;
}

/** One side of a `documents` message. */
export interface ShadowSnapshot {
  state: ShadowState;
  metadata: ShadowMetadata;
  version: number;
}

/** `…/update/documents`: the shadow before (`null` when it did not exist) and after the update. */
export interface ShadowDocumentsMessage {
  previous: ShadowSnapshot | null;
  current: ShadowSnapshot;
  /** Epoch seconds. */
  timestamp: number;
  clientToken?: string;
}

/** `…/get/accepted`: the full document with the derived delta. */
export interface GetAcceptedMessage {
  state: { desired?: JsonObject; reported?: JsonObject; delta?: JsonObject };
  metadata: { desired?: JsonObject; reported?: JsonObject; delta?: JsonObject };
  version: number;
  /** Epoch seconds. */
  timestamp: number;
  clientToken?: string;
}

/** `…/delete/accepted`. */
export interface DeleteAcceptedMessage {
  /** The version the shadow had when deleted. */
  version: number;
  /** Epoch seconds. */
  timestamp: number;
  clientToken?: string;
}

/** Result of {@link applyUpdate}. `delta` is present only when desired and reported differ afterwards. */
export type ApplyUpdateResult =
  | {
      ok: true;
      document: ShadowDocument;
      accepted: UpdateAcceptedMessage;
      delta?: ShadowDeltaMessage;
      documents: ShadowDocumentsMessage;
    }
  | { ok: false; error: ShadowErrorBody };

/**
 * Options of {@link applyUpdate}. Any {@link ShadowLimits} field may be given directly (so `SHADOW_LIMITS`
 * itself is a valid options object) or under `limits`.
 */
export interface ApplyUpdateOptions extends Partial<ShadowLimits> {
  /**
   * Version of a deleted shadow when `current` is null: numbering continues (new version = priorVersion + 1)
   * and a request `version` must equal it. Default 0 (a new shadow gets version 1).
   */
  priorVersion?: number;
  /** Limits; default {@link SHADOW_LIMITS}. Fields given directly on the options win. */
  limits?: Partial<ShadowLimits>;
}

/** JSON byte size of a state's `{desired, reported}` (absent sections omitted): what the 8 KB limit counts. */
export function stateByteSize(state: ShadowState): number {
  const s: ShadowState = {};
  if (state.desired !== undefined) s.desired = state.desired;
  if (state.reported !== undefined) s.reported = state.reported;
  return utf8ByteLength(JSON.stringify(s));
}

function section<T>(obj: { desired?: T; reported?: T }): { desired?: T; reported?: T } {
  const out: { desired?: T; reported?: T } = {};
  if (obj.desired !== undefined) out.desired = obj.desired;
  if (obj.reported !== undefined) out.reported = obj.reported;
  return out;
}

/**
 * One side of a `documents` message. It shares its objects with `doc`: documents and messages are values, never
 * changed once built (`applyUpdate` never mutates its inputs), and this one is serialised at once — a deep copy of
 * both documents per update was measurable on the server (bench/shadow-throughput).
 */
function snapshot(doc: ShadowDocument): ShadowSnapshot {
  return { state: section(doc.state), metadata: section(doc.metadata), version: doc.version };
}

/** Sets `clientToken` on a message just built (an assignment: an object spread per reply was measurable too). */
function withToken<T extends object>(msg: T, clientToken: string | undefined): T & { clientToken?: string } {
  if (clientToken !== undefined) (msg as T & { clientToken?: string }).clientToken = clientToken;
  return msg;
}

/**
 * Applies a validated update (from `parseUpdateRequest`) to a shadow.
 * - `current` null (no shadow) or a {@link DeletedShadow}: the shadow is created; its version continues from
 *   the deleted one (or `opts.priorVersion`, default 0).
 * - `request.version` present and ≠ the current version → 409 "Version conflict".
 * - Each section merges with `mergeState`; a section sent as `null` is dropped whole.
 * - Metadata: every leaf the request wrote gets `nowSeconds`; deleted leaves lose their metadata.
 * - The merged `{desired, reported}` over `maxStateBytes` (default 8192) → 413, even for a tiny request.
 * - On success the version rises by 1. On error nothing changes (inputs are never mutated).
 * @param nowSeconds epoch seconds, used for metadata and message timestamps
 * @param opts `{priorVersion?, limits?}` or a {@link ShadowLimits} object
 */
export function applyUpdate(
  current: ShadowDocument | DeletedShadow | null,
  request: UpdateShadowRequest,
  nowSeconds: number,
  opts: ApplyUpdateOptions = {},
): ApplyUpdateResult {
  const maxStateBytes = opts.maxStateBytes ?? opts.limits?.maxStateBytes ?? SHADOW_LIMITS.maxStateBytes;
  const token = request.clientToken;
  const existing = current !== null && !('deleted' in current) ? current : null;
  const baseVersion = existing?.version ?? (current !== null && 'deleted' in current ? current.version : (opts.priorVersion ?? 0));

  if (request.version !== undefined && request.version !== baseVersion) {
    return { ok: false, error: shadowError(409, SHADOW_MESSAGES.versionConflict, nowSeconds, token) };
  }

  const oldState: ShadowState = existing?.state ?? {};
  const oldMeta: ShadowMetadata = existing?.metadata ?? {};
  const newState: ShadowState = {};
  const newMeta: ShadowMetadata = {};
  for (const key of ['desired', 'reported'] as const) {
    const patch = request.state[key];
    let st: JsonObject | undefined;
    let md: JsonObject | undefined;
    if (patch === undefined) {
      st = oldState[key] === undefined ? undefined : cloneJson(oldState[key]);
      md = oldMeta[key] === undefined ? undefined : cloneJson(oldMeta[key]);
    } else if (patch === null) {
      st = undefined;
      md = undefined;
    } else {
      st = mergeState(oldState[key], patch);
      md = mergeMetadata(oldState[key], oldMeta[key], patch, st, nowSeconds);
    }
    if (st !== undefined) newState[key] = st;
    if (md !== undefined) newMeta[key] = md;
  }

  if (stateByteSize(newState) > maxStateBytes) {
    return { ok: false, error: shadowError(413, SHADOW_MESSAGES.payloadTooLarge, nowSeconds, token) };
  }

  const document: ShadowDocument = { state: newState, metadata: newMeta, version: baseVersion + 1 };

  const acceptedState: UpdateAcceptedMessage['state'] = {};
  const acceptedMeta: UpdateAcceptedMessage['metadata'] = {};
  for (const key of ['desired', 'reported'] as const) {
    const patch = request.state[key];
    if (patch === undefined) continue;
    acceptedState[key] = patch === null ? null : cloneJson(patch);
    acceptedMeta[key] = metadataFor(patch, nowSeconds);
  }
  const accepted = withToken<UpdateAcceptedMessage>(
    { state: acceptedState, metadata: acceptedMeta, version: document.version, timestamp: nowSeconds },
    token,
  );

  const documents = withToken<ShadowDocumentsMessage>(
    {
      previous: existing === null ? null : snapshot(existing),
      current: snapshot(document),
      timestamp: nowSeconds,
    },
    token,
  );

  const deltaState = computeDelta(newState.desired, newState.reported);
  if (deltaState === undefined) return { ok: true, document, accepted, documents };
  const delta = withToken<ShadowDeltaMessage>(
    {
      state: deltaState,
      metadata: projectMetadata(deltaState, newMeta.desired),
      version: document.version,
      timestamp: nowSeconds,
    },
    token,
  );
  return { ok: true, document, accepted, delta, documents };
}

/**
 * `…/get/accepted` for a stored shadow: desired, reported, the derived delta (when non-empty) and their
 * metadata (`metadata.delta` = the desired timestamps of the delta leaves).
 * @param nowSeconds epoch seconds
 */
export function getAcceptedMessage(doc: ShadowDocument, nowSeconds: number, clientToken?: string): GetAcceptedMessage {
  const state: GetAcceptedMessage['state'] = cloneJson(section(doc.state) as JsonObject) as ShadowState;
  const metadata: GetAcceptedMessage['metadata'] = cloneJson(section(doc.metadata) as JsonObject) as ShadowMetadata;
  const delta = computeDelta(doc.state.desired, doc.state.reported);
  if (delta !== undefined) {
    state.delta = delta;
    metadata.delta = projectMetadata(delta, doc.metadata.desired);
  }
  return withToken<GetAcceptedMessage>({ state, metadata, version: doc.version, timestamp: nowSeconds }, clientToken);
}

/**
 * `…/delete/accepted`: `{version, timestamp, clientToken?}`.
 * @param version the version the shadow had when deleted
 * @param nowSeconds epoch seconds
 */
export function deleteAcceptedMessage(version: number, nowSeconds: number, clientToken?: string): DeleteAcceptedMessage {
  return withToken<DeleteAcceptedMessage>({ version, timestamp: nowSeconds }, clientToken);
}
