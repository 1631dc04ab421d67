// Starts the pinned @vercel/cosmosdb-server with the given arguments, and exits when standard input closes.
// The Go test helper holds the other end of that pipe, so the server never outlives the process that started
// it, however that process ends.
process.stdin.on("end", () => process.exit(0));
process.stdin.on("error", () => process.exit(0));
process.stdin.resume();

// Where the pinned server crashes (HTTP 500) instead of answering as Azure and the emulator do, the handlers are
// wrapped before the router captures them; every other request reaches the server's own handlers unchanged.
//  - A point read (GET …/docs/{id}) of a missing document: the handler reads a property of the missing
//    document. Azure answers 404 NotFound; production code uses point reads.
//  - A document request to a container (or database) that does not exist: the create, replace, delete and
//    patch handlers dereference the missing container. Azure answers 404 NotFound.
const lib = "./node_modules/@vercel/cosmosdb-server/lib/";
const { default: partitionHeader, parsePartitionKey } = require(lib + "utils/get-partition-from-header.js");
const notFound = (res) => {
  res.statusCode = 404;
  return { code: "NotFound", message: "Entity with the specified id does not exist in the system." };
};
const wrap = (name, missing) => {
  const mod = require(lib + "handler/" + name + ".js");
  const original = mod.default;
  mod.default = (account, req, res, params) => {
    const collection = account.database(params.dbId).collection(params.collId);
    if (!collection.read() || missing(collection, req, params)) {
      return notFound(res);
    }
    return original(account, req, res, params);
  };
};
const none = () => false;
wrap("read-document", (collection, req, params) => {
  try {
    return !collection.document(params.docId, parsePartitionKey(partitionHeader(req), params.docId)).read();
  } catch (err) {
    return false; // a malformed partition key header: let the server answer as it does
  }
});
for (const name of ["create-document", "replace-document", "delete-document", "patch-document"]) {
  wrap(name, none);
}

require(lib + "cli.js");
