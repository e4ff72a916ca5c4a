// retry-outage drives the SDK against a Parlor whose PostgreSQL is down, for the Go test
// internal/faults/sdk_retry_test.go (which bundles this file with esbuild, runs it with
// node and restarts the database once the first send has been refused). Arguments: the
// server's URL, an access token and a room id. It prints one line per attempt
// ("attempt <label> <status>", 0 for a network error) and finally a JSON summary line.
import { createParlorClient } from "../src/index.js";

declare const process: { argv: string[]; stdout: { write(s: string): boolean }; exitCode?: number };

const [baseUrl = "", token = "", roomId = ""] = process.argv.slice(2);
let label = "";
const attempts: Record<string, number[]> = {};

const recording = async (request: Request): Promise<Response> => {
  const seen = (attempts[label] ??= []);
  try {
    const response = await fetch(request);
    seen.push(response.status);
    process.stdout.write(`attempt ${label} ${response.status}\n`);
    return response;
  } catch (err) {
    seen.push(0);
    process.stdout.write(`attempt ${label} 0\n`);
    throw err;
  }
};

const parlor = createParlorClient({
  baseUrl,
  getAccessToken: () => token,
  fetch: recording,
  retry: { attempts: 30, maxWaitSeconds: 5 },
});

const summary: Record<string, { status: number; attempts: number[] }> = {};

// Not safe to repeat (a second room could be made): sent once, the 503 handed back.
label = "create-room";
const created = await parlor.POST("/v1/rooms", { body: { name: "made during the outage", entry_price: 0, slow_mode_seconds: 0 } });
summary[label] = { status: created.response.status, attempts: attempts[label] ?? [] };

// A send carries its client_msg_id, so it is retried until the database is back.
label = "send";
const sent = await parlor.POST("/v1/rooms/{room_id}/messages", {
  params: { path: { room_id: roomId } },
  body: { client_msg_id: "3f1e2d4c-5b6a-4978-8c9d-0e1f2a3b4c5d", body: "sent through an outage" },
});
summary[label] = { status: sent.response.status, attempts: attempts[label] ?? [] };

label = "me";
const me = await parlor.GET("/v1/me");
summary[label] = { status: me.response.status, attempts: attempts[label] ?? [] };

process.stdout.write(JSON.stringify(summary) + "\n");
