// The EventSink of events.ts on events.k8s.io/v1.
//
// Why events.k8s.io/v1 and not core/v1: it is the current Events API (core/v1 Event is kept for
// compatibility), it requires what makes an Event useful to a reader (reportingController and
// reportingInstance say which replica saw it, action says what it was doing, regarding points at
// the object), and it models repetition explicitly as a series. Both APIs share one storage, so
// `kubectl describe agentpolicy ...` and `kubectl events` show these Events all the same.
import { PatchStrategy, V1MicroTime, setHeaderOptions, type EventsV1Api } from '@kubernetes/client-node';
import type { EventSink } from './events.ts';
import { kubeError } from './kube-errors.ts';

export function kubeEventSink(api: EventsV1Api): EventSink {
  const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
  return {
    async create(e) {
      try {
        await api.createNamespacedEvent({
          namespace: e.namespace,
          body: {
            apiVersion: 'events.k8s.io/v1',
            kind: 'Event',
            metadata: { name: e.name, namespace: e.namespace },
            eventTime: new V1MicroTime(Date.parse(e.eventTime)),
            reportingController: e.reportingController,
            reportingInstance: e.reportingInstance,
            action: e.action,
            reason: e.reason,
            note: e.note,
            type: e.type,
            regarding: {
              apiVersion: e.regarding.apiVersion,
              kind: e.regarding.kind,
              namespace: e.regarding.namespace,
              name: e.regarding.name,
              ...(e.regarding.uid ? { uid: e.regarding.uid } : {}),
              ...(e.regarding.resourceVersion ? { resourceVersion: e.regarding.resourceVersion } : {}),
            },
          },
        });
      } catch (err) {
        throw kubeError(err, `create Event ${e.namespace}/${e.name}`);
      }
    },
    async updateSeries(namespace, name, count, lastObservedTime) {
      try {
        await api.patchNamespacedEvent({ name, namespace, body: { series: { count, lastObservedTime } } }, mergePatch);
      } catch (err) {
        throw kubeError(err, `update Event ${namespace}/${name}`);
      }
    },
  };
}
