// Package-level entry of the meshcast browser client: watch() over WebSocket, SSE or gRPC-Web,
// the normalised event shape, the vehicle set, backoff and JIS X 0410 mesh helpers.

export * from "./events";
export * from "./state";
export * from "./backoff";
export * from "./mesh";
export * from "./watch";
