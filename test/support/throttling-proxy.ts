import { createServer, request } from "node:http";
import { listenLocally } from "./listen.ts";

/**
 * An HTTP proxy in front of a stand-in that refuses some calls the way AWS throttles them:
 * DynamoDB with 400 ThrottlingException (JSON 1.0), S3 with 503 SlowDown (XML). Refused calls
 * never reach the stand-in, as a throttled request changes nothing at AWS. Which calls are
 * refused comes from a seeded sequence, so a run can be repeated.
 */
export async function throttlingProxy(
  target: string,
  service: "dynamodb" | "s3",
  options: { readonly rate: number; readonly random: () => number },
) {
  const counts = { forwarded: 0, throttled: 0 };
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      if (options.random() < options.rate) {
        counts.throttled += 1;
        if (service === "dynamodb") {
          res.writeHead(400, { "content-type": "application/x-amz-json-1.0" });
          res.end(
            JSON.stringify({
              __type: "com.amazonaws.dynamodb.v20120810#ThrottlingException",
              message: "Rate of requests exceeds the allowed throughput.",
            }),
          );
        } else {
          res.writeHead(503, { "content-type": "application/xml" });
          res.end(
            "<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>",
          );
        }
        return;
      }
      counts.forwarded += 1;
      const url = new URL(req.url ?? "/", target);
      const out = request(
        url,
        { method: req.method, headers: { ...req.headers, host: url.host } },
        (answer) => {
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(res);
        },
      );
      out.on("error", () => res.destroy());
      out.end(Buffer.concat(chunks));
    });
  });
  const listening = await listenLocally(server);
  return { ...listening, counts };
}
