import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { createServer } from "node:net";

/**
 * A `moto_server` of the test's own on 127.0.0.1 (moto emulates CloudFormation, CloudWatch,
 * EventBridge, SQS, S3, DynamoDB and Lambda's API from AWS's API definitions). The CloudFormation
 * deployments each start their own, so that no state leaks between them: moto keeps what a
 * failed stack operation created. The smoke test's stack runs on the run's shared moto (the
 * global setup's), where nothing else makes stacks, buses, queues or alarms.
 */

export interface Moto {
  readonly endpoint: string;
  readonly child: ChildProcess;
  /** What moto printed on standard error (its tracebacks). */
  readonly log: () => string;
}

/** Credentials and Region that moto accepts; never real ones. */
export const MOTO_CLIENT = {
  region: "us-east-1",
  credentials: { accessKeyId: "testing", secretAccessKey: "testing" },
};

/** Whether `moto_server` is on the PATH (tests skip themselves only when it is not). */
export function motoAvailable(): boolean {
  try {
    execFileSync("sh", ["-c", "command -v moto_server"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

export async function startMoto(): Promise<Moto> {
  const port = await freePort();
  const child = spawn("moto_server", ["-H", "127.0.0.1", "-p", String(port)], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  let errors = "";
  child.stderr?.on("data", (chunk: Buffer) => {
    errors += chunk.toString();
  });
  const endpoint = `http://127.0.0.1:${port}`;
  // Bounded: moto answers within a few seconds of starting.
  for (let attempt = 0; attempt < 100; attempt++) {
    if (child.exitCode !== null) throw new Error(`moto_server exited: ${errors}`);
    try {
      const answer = await fetch(`${endpoint}/moto-api/data.json`);
      if (answer.ok) return { endpoint, child, log: () => errors };
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  child.kill("SIGKILL");
  throw new Error(`moto_server did not answer within 20 s: ${errors}`);
}

export async function stopMoto(moto: Moto | undefined): Promise<void> {
  if (moto === undefined || moto.child.exitCode !== null) return;
  const exited = new Promise((done) => moto.child.once("exit", done));
  moto.child.kill("SIGTERM");
  await exited;
}
