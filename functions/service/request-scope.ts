import { AsyncLocalStorage } from "node:async_hooks";

/** What ties a log line to the request it was written for (docs/security.md, "What is logged"). */
export interface RequestIds {
  /** The front door's request ID (`X-Amzn-Trace-Id`, API Gateway's), or one made up locally. */
  readonly requestId?: string | undefined;
  /** The Lambda invocation's ID (`awsRequestId`). */
  readonly invocation?: string | undefined;
}

/**
 * The IDs of the request being served, carried along its asynchronous work, so that every line
 * logged while serving it names it without each call site passing it on. Concurrent requests
 * in one process (the local server, a Lambda instance taking several at once) each see their own.
 */
const scope = new AsyncLocalStorage<RequestIds>();

/** Runs `work` as the serving of one request: what it logs carries `ids`. */
export function inRequest<T>(ids: RequestIds, work: () => T): T {
  return scope.run(ids, work);
}

/** The IDs of the request being served here, if any. */
export function currentRequest(): RequestIds | undefined {
  return scope.getStore();
}
