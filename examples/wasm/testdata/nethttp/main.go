// Command nethttp makes one GET with net/http's default transport and prints what happened. The wasm example's
// test runs it under plain `node` to show why the library brings its own fetch transport: there, net/http turns
// its fetch transport off (process.argv0 starts with "node") and has no sockets to dial.
package main

import (
	"fmt"
	"net/http"
	"os"
)

func main() {
	resp, err := http.Get(os.Args[1])
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	resp.Body.Close()
	fmt.Println("status:", resp.Status)
}
