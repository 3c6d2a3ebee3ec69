// The audit log's public surface: build a record per decision, append it, verify a folder.
export { canonicalJson, canonicalBytes } from './canonical.ts';
export { GENESIS_HASH, recordHash } from './chain.ts';
export {
  buildAuditRecord, auditParams, AUDIT_SCHEMA_VERSION,
  type AuditRecord, type AuditRecordBody, type DecisionRecordBody, type LifecycleRecordBody, type AuditMeta, type AuditExecution, type AuditElevation,
} from './record.ts';
export { loadOrCreateAuditSigner, importAuditPublicKey, type CheckpointSigner } from './signer.ts';
export { AuditLog, type AuditLogOptions, type AuditStats } from './writer.ts';
export { verifyAuditDir, type VerifyReport, type VerifyProblem, type VerifyProblemKind, type VerifyOptions } from './verify.ts';
