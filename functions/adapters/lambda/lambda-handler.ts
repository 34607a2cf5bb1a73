import { methodNotAllowed } from "../../bits/ack.ts";
import type { UploadService } from "../../service/upload-service.ts";
import {
  classifyEvent,
  type EventOptions,
  type HttpResult,
  toBitsRequest,
  toLambdaResult,
} from "./events.ts";

/**
 * A Lambda handler for ALB, API Gateway REST (payload v1) and HTTP API or Function URL
 * (payload v2) events around one service.
 */
export function createLambdaHandler(
  service: UploadService,
  options: Omit<EventOptions, "invocationId"> = {},
) {
  return async (event: unknown, context?: { awsRequestId?: string }): Promise<HttpResult> => {
    const http = classifyEvent(event);
    if (http === undefined) {
      // Not an HTTP event: nothing to answer in kind; refuse it like a bad method.
      const response = methodNotAllowed();
      return { statusCode: response.status, headers: { ...response.headers }, body: "" };
    }
    const request = toBitsRequest(http, { ...options, invocationId: context?.awsRequestId });
    return await toLambdaResult(http, await service.handle(request));
  };
}
