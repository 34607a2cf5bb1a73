import { methodNotAllowed } from "../../bits/ack.ts";
import type { UploadService } from "../../service/upload-service.ts";
import { classifyEvent, type HttpResult, toBitsRequest, toLambdaResult } from "./events.ts";

/**
 * A Lambda handler for ALB, API Gateway REST (payload v1) and HTTP API or Function URL
 * (payload v2) events around one service.
 */
export function createLambdaHandler(service: UploadService) {
  return async (event: unknown): Promise<HttpResult> => {
    const http = classifyEvent(event);
    if (http === undefined) {
      // Not an HTTP event: nothing to answer in kind; refuse it like a bad method.
      const response = methodNotAllowed();
      return { statusCode: response.status, headers: { ...response.headers }, body: "" };
    }
    return toLambdaResult(http, await service.handle(toBitsRequest(http)));
  };
}
