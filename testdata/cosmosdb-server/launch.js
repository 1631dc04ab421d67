// Starts the pinned @vercel/cosmosdb-server with the given arguments, and exits when standard input closes.
// The Go test helper holds the other end of that pipe, so the server never outlives the process that started
// it, however that process ends.
process.stdin.on("end", () => process.exit(0));
process.stdin.on("error", () => process.exit(0));
process.stdin.resume();
require("./node_modules/@vercel/cosmosdb-server/lib/cli.js");
