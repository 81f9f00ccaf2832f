// Command printscript prints the chat store script, for scripts/bench-chat.sh
// and scripts/bench-store-floor.sh; with -many, the script that stores
// several messages in one call (broker/chatbatch.go).
package main

import (
	"flag"
	"io"
	"os"

	"github.com/occase/occase/broker"
)

func main() {
	many := flag.Bool("many", false, "print the script that stores several messages per call")
	flag.Parse()
	if *many {
		io.WriteString(os.Stdout, broker.StoreManySource)
		return
	}
	io.WriteString(os.Stdout, broker.StoreScriptSource)
}
