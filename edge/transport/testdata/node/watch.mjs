// gRPC-Web Watch client for the edge/transport tests (a real gRPC-Web client: @connectrpc/connect-web
// on Node's fetch). The schema comes from a binary FileDescriptorSet written by the Go test, so
// no code generation is needed.
//
//   node watch.mjs <baseUrl> <descriptorSet.pb> '<WatchRequest JSON>' [binary|json]
//
// Prints one line per RiderEvent (protojson), then one final line {"end":{"code":..,"message":..}}
// with the Connect code of the error that ended the stream ("ok" for a clean end).
import { readFileSync } from "node:fs";
import { createClient, ConnectError, Code } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { createFileRegistry, fromBinary, fromJson, toJsonString } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";

const [baseUrl, descPath, reqJson, format = "binary"] = process.argv.slice(2);
const registry = createFileRegistry(fromBinary(FileDescriptorSetSchema, readFileSync(descPath)));
const service = registry.getService("meshcast.v1.RiderService");
const requestSchema = registry.getMessage("meshcast.v1.WatchRequest");
const eventSchema = registry.getMessage("meshcast.v1.RiderEvent");

const transport = createGrpcWebTransport({ baseUrl, useBinaryFormat: format === "binary" });
const client = createClient(service, transport);

const out = (line) => process.stdout.write(line + "\n");
const codeName = (c) => Code[c].replace(/([a-z])([A-Z])/g, "$1_$2").toLowerCase();

// The test ends the client by closing stdin.
const abort = new AbortController();
process.stdin.on("end", () => abort.abort());
process.stdin.resume();

try {
  const req = fromJson(requestSchema, JSON.parse(reqJson), { registry });
  for await (const ev of client.watch(req, { signal: abort.signal })) {
    out(toJsonString(eventSchema, ev, { registry }));
  }
  out(JSON.stringify({ end: { code: "ok", message: "" } }));
} catch (e) {
  const ce = ConnectError.from(e);
  out(JSON.stringify({ end: { code: codeName(ce.code), message: ce.rawMessage } }));
}
process.exit(0);
