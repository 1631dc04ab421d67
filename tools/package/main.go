// Command package builds the Functions custom handler and writes deployable zips, one per target (see
// internal/funcpkg for the layout):
//
//	go run ./tools/package -out dist          # linux/amd64 (Flex Consumption) and windows/amd64
//
// Each zip also has an unpacked copy in dist/<name>/ for `func start`.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/cosmoslease/cosmoslease/internal/funcpkg"
)

func main() {
	out := flag.String("out", "dist", "output folder")
	root := flag.String("root", ".", "the repository root")
	flag.Parse()
	for _, t := range []funcpkg.Target{funcpkg.Linux, funcpkg.Windows} {
		zipPath, err := funcpkg.Build(*root, *out, t)
		if err != nil {
			fmt.Fprintf(os.Stderr, "package: %s: %v\n", t.Name(), err)
			os.Exit(1)
		}
		fmt.Println(zipPath)
	}
}
