// Command printscript prints the chat store script, for scripts/bench-chat.sh.
package main

import (
	"io"
	"os"

	"github.com/occase/occase/broker"
)

func main() { io.WriteString(os.Stdout, broker.StoreScriptSource) }
