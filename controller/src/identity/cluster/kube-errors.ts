// Reading @kubernetes/client-node failures without depending on its message format: the status
// code, and the API server's own one-line reason (from the Status body) for error messages.
// The client's Error.message embeds response headers and the whole body, too much for a log line.

/** HTTP status of an API error, or undefined for a transport failure (connection refused, TLS). */
export function kubeStatus(err: unknown): number | undefined {
  if (err && typeof err === 'object' && 'code' in err) {
    const code = err.code;
    if (typeof code === 'number' && code >= 100 && code < 600) return code;
  }
  return undefined;
}

const MAX_REASON = 300;

function clip(text: string): string {
  const oneLine = text.replace(/\s+/g, ' ').trim();
  return oneLine.length > MAX_REASON ? `${oneLine.slice(0, MAX_REASON)}…` : oneLine;
}

/** The API server's reason (Status.message), or a short description of a transport failure. */
export function kubeReason(err: unknown): string {
  const status = kubeStatus(err);
  if (status !== undefined) {
    const raw: unknown = (err as { body?: unknown }).body;
    let body: unknown = raw;
    if (typeof raw === 'string') {
      try {
        body = JSON.parse(raw);
      } catch {
        return clip(`HTTP ${status}: ${raw}`);
      }
    }
    const message = body && typeof body === 'object' && 'message' in body ? body.message : undefined;
    return clip(typeof message === 'string' && message !== '' ? `HTTP ${status}: ${message}` : `HTTP ${status}`);
  }
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code ?? (err.cause as NodeJS.ErrnoException | undefined)?.code;
    return clip(code ? `${err.message} (${code})` : err.message);
  }
  return clip(String(err));
}
