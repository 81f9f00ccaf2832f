package moderation

import (
	"bytes"
	"fmt"
	"os"
	"regexp"
)

// The operators' tokens (--admin-token-file, docs/security.md "Named
// operator tokens"): one line per operator, "name token [role]", so that the
// moderation log says who did what and one operator's access is revoked
// by deleting that line (and restarting the node). A file of one bare
// token is one operator named DefaultOperator, as before names existed.
// Names are labels for the log, not secrets; the tokens are.
//
// A role says what a token may do (docs/security.md "Operator roles"):
// RoleModerator every action (the default, so files written before roles
// keep their meaning), RoleViewer the reads only (the queue, the bans,
// the log), for support staff who look but must not act. There is no
// third role: the one action beyond a moderator's reach would be the
// rebuild of the list of bans, which is idempotent, adds only bans that
// exist already and runs one at a time, and whoever edits the token file
// holds every power anyway.

// Operator is one line of the token file.
type Operator struct {
	Name  string
	Token []byte
	// Role is RoleModerator or RoleViewer; "" is RoleModerator.
	Role string
}

// The roles of a token line.
const (
	RoleModerator = "moderator"
	RoleViewer    = "viewer"
)

// RoleOf is op's role, RoleModerator when it names none.
func (op Operator) RoleOf() string {
	if op.Role == "" {
		return RoleModerator
	}
	return op.Role
}

// CanAct says whether role may take actions (POST), not only read.
func CanAct(role string) bool { return role == RoleModerator || role == "" }

// DefaultOperator names the token of a file holding one bare token.
const DefaultOperator = "admin"

// MaxOperators bounds the lines of a token file: each request compares
// its token with every one.
const MaxOperators = 256

var operatorName = regexp.MustCompile(`^[a-z0-9_.-]{1,32}$`)

// ParseTokens reads a token file's content: lines "name token" or "name
// token role", or one line with a bare token; blank lines and lines
// starting with # are skipped. A refusal names the line, never the token.
func ParseTokens(b []byte) ([]Operator, error) {
	var ops []Operator
	names, toks := map[string]int{}, map[string]int{}
	bare := 0
	for i, line := range bytes.Split(b, []byte("\n")) {
		n := i + 1
		line = bytes.TrimSpace(line)
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		f := bytes.Fields(line)
		var op Operator
		switch len(f) {
		case 1:
			op = Operator{Name: DefaultOperator, Token: f[0], Role: RoleModerator}
			bare = n
		case 2, 3:
			op = Operator{Name: string(f[0]), Token: f[1], Role: RoleModerator}
			if !operatorName.MatchString(op.Name) {
				return nil, fmt.Errorf("line %d: a name is 1 to 32 of a-z, 0-9, _ . - (then a space and the token)", n)
			}
			if len(f) == 3 {
				op.Role = string(f[2])
				if op.Role != RoleModerator && op.Role != RoleViewer {
					// Not echoed: a misplaced token could be there.
					return nil, fmt.Errorf("line %d: the third field is the role: want %s or %s (none is %s)", n, RoleModerator, RoleViewer, RoleModerator)
				}
			}
		default:
			return nil, fmt.Errorf("line %d: want \"name token\" or \"name token role\" (%d fields)", n, len(f))
		}
		if len(op.Token) < MinTokenLen {
			return nil, fmt.Errorf("line %d: the token holds %d bytes, want at least %d (make one with: openssl rand -hex 32)", n, len(op.Token), MinTokenLen)
		}
		if m, ok := names[op.Name]; ok {
			return nil, fmt.Errorf("line %d: the name %s is on line %d already", n, op.Name, m)
		}
		if m, ok := toks[string(op.Token)]; ok {
			return nil, fmt.Errorf("line %d: the same token as line %d (each operator needs a token of its own)", n, m)
		}
		names[op.Name], toks[string(op.Token)] = n, n
		ops = append(ops, op)
	}
	switch {
	case len(ops) == 0:
		return nil, fmt.Errorf("no token (make one with: openssl rand -hex 32)")
	case bare > 0 && len(ops) > 1:
		return nil, fmt.Errorf("line %d: a bare token is for a file of one token; with several, give each a name (\"name token\")", bare)
	case len(ops) > MaxOperators:
		return nil, fmt.Errorf("%d tokens: at most %d", len(ops), MaxOperators)
	}
	return ops, nil
}

// LoadTokens reads and parses the token file at path (--admin-token-file
// of a node).
func LoadTokens(path string) ([]Operator, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--admin-token-file: %w", err)
	}
	ops, err := ParseTokens(b)
	if err != nil {
		return nil, fmt.Errorf("--admin-token-file %s: %w", path, err)
	}
	return ops, nil
}

// LoadToken reads the one token a client sends (--admin-token-file of
// `occase moderate --node`): a file of one bare token or one "name
// token" line, the operator's own.
func LoadToken(path string) ([]byte, error) {
	ops, err := LoadTokens(path)
	if err != nil {
		return nil, err
	}
	if len(ops) != 1 {
		return nil, fmt.Errorf("--admin-token-file %s: %d tokens; with --node, give a file holding your own token only", path, len(ops))
	}
	return ops[0].Token, nil
}
