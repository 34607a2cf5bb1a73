import type { Server, ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

/**
 * Starts a test's HTTP server on 127.0.0.1 and a free port; `close` also drops kept-alive
 * connections, so a test never waits on a client that stays connected.
 */
export async function listenLocally(server: Server) {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()));
        server.closeAllConnections();
      }),
  };
}

/** An answer in AWS's JSON 1.1 protocol (SSM, EventBridge): a body, and an error's type. */
export function answerJson11(
  res: ServerResponse,
  status: number,
  body: unknown,
  errorType?: string,
) {
  res.writeHead(status, {
    "content-type": "application/x-amz-json-1.1",
    ...(errorType ? { "x-amzn-errortype": errorType } : {}),
  });
  res.end(JSON.stringify(body));
}
