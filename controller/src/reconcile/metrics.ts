// Reconciler metrics, registered on the process registry by whoever wires the controller. Labels
// are key kinds and outcomes: a handful of values each, never an object name.
import { Counter, Gauge, type Registry } from 'prom-client';

export const reconcileKinds = ['AgentIdentity', 'AgentPolicy', 'AgentTool', 'TrustBundle', 'Snapshot', 'Resync'] as const;
const outcomes = ['success', 'retry', 'terminal'] as const;
const statusKinds = ['AgentIdentity', 'AgentPolicy', 'AgentTool'] as const;

export interface ReconcileMetrics {
  readonly reconciles: Counter<'kind' | 'result'>;
  readonly statusUpdates: Counter<'kind'>;
  readonly trustBundleWrites: Counter<'action'>;
  readonly queueDepth: Gauge;
  readonly leader: Gauge;
  readonly leaderTransitions: Counter;
}

export function registerReconcileMetrics(registry: Registry): ReconcileMetrics {
  const m: ReconcileMetrics = {
    reconciles: new Counter({ name: 'mandate_reconcile_total', help: 'Reconciler work-queue runs by key kind and result (success, retry, terminal).', labelNames: ['kind', 'result'], registers: [registry] }),
    statusUpdates: new Counter({ name: 'mandate_status_updates_total', help: 'Status subresource writes by kind.', labelNames: ['kind'], registers: [registry] }),
    trustBundleWrites: new Counter({ name: 'mandate_trust_bundle_writes_total', help: 'Trust bundle ConfigMap writes by action.', labelNames: ['action'], registers: [registry] }),
    queueDepth: new Gauge({ name: 'mandate_workqueue_depth', help: 'Keys waiting in the reconciler work queue.', registers: [registry] }),
    leader: new Gauge({ name: 'mandate_leader', help: '1 while this replica holds the leader Lease.', registers: [registry] }),
    leaderTransitions: new Counter({ name: 'mandate_leader_transitions_total', help: 'Times this replica became leader.', registers: [registry] }),
  };
  for (const kind of reconcileKinds) for (const result of outcomes) m.reconciles.inc({ kind, result }, 0);
  for (const kind of statusKinds) m.statusUpdates.inc({ kind }, 0);
  for (const action of ['create', 'update', 'delete']) m.trustBundleWrites.inc({ action }, 0);
  m.leader.set(0);
  return m;
}
