// Command printscript prints the chat store script, for scripts/bench-chat.sh.
package main

import (
	"fmt"

	"github.com/occase/occase/broker"
)

func main() { fmt.Print(broker.StoreScriptSource) }
