// Command package builds a Functions custom handler and writes deployable zips, one per target (see
// internal/funcpkg for the layout):
//
//	go run ./tools/package -out dist          # this project's handler: linux/amd64 (Flex Consumption) and windows/amd64
//
// Each zip also has an unpacked copy in dist/<name>/ for `func start`. `cosmoslease package` does the same for
// one target, with command jobs and the app's files.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/cosmoslease/cosmoslease/internal/funcpkg"
)

func main() {
	out := flag.String("out", "dist", "output folder")
	root := flag.String("root", ".", "the module to build in")
	handler := flag.String("handler", funcpkg.DefaultHandler, "the handler's main package")
	flag.Parse()
	for _, t := range []funcpkg.Target{funcpkg.Linux, funcpkg.Windows} {
		zipPath, _, err := funcpkg.Build(context.Background(), funcpkg.Spec{Root: *root, Handler: *handler}, *out, t)
		if err != nil {
			fmt.Fprintf(os.Stderr, "package: %s: %v\n", t.Name(), err)
			os.Exit(1)
		}
		fmt.Println(zipPath)
	}
}
