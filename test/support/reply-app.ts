import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { listenLocally } from "./listen.ts";

export interface Notification {
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingMessage["headers"];
  readonly body: Buffer;
}

export type AppHandler = (notification: Notification, res: ServerResponse) => void | Promise<void>;

/**
 * A server application for upload-reply tests: a real Node `http` server on 127.0.0.1 that
 * records every notification it receives and answers with the test's handler.
 */
export async function startReplyApp(handler: AppHandler) {
  const received: Notification[] = [];
  let current = handler;
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      const notification = {
        method: req.method ?? "",
        url: req.url ?? "",
        headers: req.headers,
        body: Buffer.concat(chunks),
      };
      received.push(notification);
      Promise.resolve(current(notification, res)).catch(() => {
        if (!res.headersSent) res.writeHead(500);
        res.end();
      });
    });
  });
  const listening = await listenLocally(server);
  return {
    url: listening.url,
    received,
    answer(next: AppHandler) {
      current = next;
    },
    close: listening.close,
  };
}
