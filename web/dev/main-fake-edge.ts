// node dev/run.mjs fake-edge [--port 8080] [--vehicles 300]
import { fileURLToPath } from "node:url";
import { startFakeEdge } from "./fake-edge";

const arg = (k: string, d: string) => {
  const i = process.argv.indexOf(k);
  return i > 0 ? process.argv[i + 1] : d;
};
const web = fileURLToPath(new URL("..", import.meta.url));
const edge = await startFakeEdge(
  { dist: `${web}dist`, zones: `${web}../deploy/zones/tokyo.geojson`, vehicles: Number(arg("--vehicles", "300")) },
  Number(arg("--port", "8080")),
);
console.log(`fake edge: ${edge.url}  (?transport=ws|sse|grpc-web)`);
