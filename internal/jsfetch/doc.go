// Package jsfetch is an HTTP transport for GOOS=js GOARCH=wasm that sends every request with the host's fetch
// (syscall/js), so the same build talks to Cosmos DB from Node.js, Deno, browsers and edge runtimes.
//
// net/http has a fetch transport too, but turns it off when process.argv0 starts with "node" (so that Go's own
// tests can use a fake network), and then cannot dial: under plain `node` a request fails. This one never
// falls back to sockets, which no JavaScript host gives WebAssembly.
//
// The whole response body is read before Do returns: lease documents and query pages are small, and the
// request's context then bounds the body as well as the headers. In a browser the account must allow the page's
// origin (CORS) and expose the headers the SDK reads (ETag, Date, x-ms-*).
package jsfetch
