package posts

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"os"
	"strings"
)

// Menu is the pair of trees that give location and product codes their
// meaning. A node's code is the path of 0-based child indexes from the top
// level down. Its JSON form is the one GET /api/menu serves and the one
// --menu files may use (docs/menus.md).
type Menu struct {
	Locations Tree `json:"locations"`
	Products  Tree `json:"products"`
}

// Tree is one menu. Depth is the filter depth: codes are hashed after being
// cut to it. 0 means "not stated" (the configured depth applies).
type Tree struct {
	Depth    int     `json:"depth"`
	Children []*Node `json:"children"`
}

// Node is one entry of a tree; a leaf has no children.
type Node struct {
	Name     string  `json:"name"`
	Children []*Node `json:"children,omitempty"`
}

//go:embed demo_menu.json
var demoMenu []byte

// DemoMenu returns the small menu shipped with occase (three countries with
// a few states and cities; cars, motorcycles and trucks with a few makes and
// models), meant for the embedded broker and for trying things out.
func DemoMenu() *Menu {
	m, err := ParseMenu(demoMenu)
	if err != nil {
		panic("the embedded demo menu does not parse: " + err.Error())
	}
	return m
}

// LoadMenu reads a menu file in any of the formats ParseMenu accepts.
func LoadMenu(path string) (*Menu, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read menu: %w", err)
	}
	m, err := ParseMenu(b)
	if err != nil {
		return nil, fmt.Errorf("menu %s: %w", path, err)
	}
	return m, nil
}

// ParseMenu reads a menu in one of three formats, told apart by content:
//   - JSON {"locations":{...},"products":{...}}, the GET /api/menu shape;
//   - JSON {"menus":[{"data":"...","depth":3},{...}]}, the original occase
//     format whose data is '='-separated "depth;name;flag" records;
//   - text: one name per line, each level indented 3 spaces more than its
//     parent; two unindented lines open the location and the product tree.
func ParseMenu(b []byte) (*Menu, error) {
	t := bytes.TrimSpace(b)
	if len(t) > 0 && t[0] == '{' {
		var probe map[string]json.RawMessage
		if err := json.Unmarshal(t, &probe); err != nil {
			return nil, fmt.Errorf("menu JSON: %w", err)
		}
		if _, ok := probe["menus"]; ok {
			return parseCounterMenu(t)
		}
		var m Menu
		dec := json.NewDecoder(bytes.NewReader(t))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&m); err != nil {
			return nil, fmt.Errorf("menu JSON: %w", err)
		}
		return &m, m.check()
	}
	return parseIndented(string(b))
}

func (m *Menu) check() error {
	for _, tr := range []struct {
		name string
		t    *Tree
	}{{"locations", &m.Locations}, {"products", &m.Products}} {
		if len(tr.t.Children) == 0 {
			return fmt.Errorf("the %s tree is empty", tr.name)
		}
		if tr.t.Depth < 0 || tr.t.Depth > 4 {
			return fmt.Errorf("the %s depth %d is not in 1..4", tr.name, tr.t.Depth)
		}
		if err := checkNodes(tr.t.Children); err != nil {
			return fmt.Errorf("%s: %w", tr.name, err)
		}
	}
	return nil
}

func checkNodes(ns []*Node) error {
	for _, n := range ns {
		if n == nil || strings.TrimSpace(n.Name) == "" {
			return fmt.Errorf("a node has no name")
		}
		if err := checkNodes(n.Children); err != nil {
			return err
		}
	}
	return nil
}

// valid tells whether code names a node of t that can classify a post: a
// node at the filter depth or deeper, or a leaf above it (which hashes to
// 0, PROTOCOL.md section 4).
func (t *Tree) valid(code []uint64) bool {
	ns := t.Children
	var n *Node
	for _, c := range code {
		if c >= uint64(len(ns)) {
			return false
		}
		n = ns[c]
		ns = n.Children
	}
	return n != nil && (len(code) >= t.Depth || len(n.Children) == 0)
}

// builder assembles a tree from (level, name) records given in pre-order.
type builder struct {
	roots []*Node
	stack []*Node // stack[i] = last node seen at level i+1
}

func (b *builder) add(level int, name string) error {
	if level < 1 || level > len(b.stack)+1 {
		return fmt.Errorf("%q is %d levels deep after a node %d deep (a level may grow by one)", name, level, len(b.stack))
	}
	n := &Node{Name: name}
	b.stack = b.stack[:level-1]
	if level == 1 {
		b.roots = append(b.roots, n)
	} else {
		p := b.stack[level-2]
		p.Children = append(p.Children, n)
	}
	b.stack = append(b.stack, n)
	return nil
}

func parseIndented(s string) (*Menu, error) {
	var trees []*builder
	for i, line := range strings.Split(strings.ReplaceAll(s, "\r\n", "\n"), "\n") {
		if strings.TrimSpace(line) == "" || strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		name := strings.TrimLeft(line, " ")
		ind := len(line) - len(name)
		name = strings.TrimSpace(name)
		if strings.ContainsRune(line[:ind+1], '\t') {
			return nil, fmt.Errorf("line %d: indent with spaces, not tabs", i+1)
		}
		if ind%3 != 0 {
			return nil, fmt.Errorf("line %d: indentation of %d spaces is not a multiple of 3", i+1, ind)
		}
		if ind == 0 {
			trees = append(trees, &builder{})
			continue
		}
		if len(trees) == 0 {
			return nil, fmt.Errorf("line %d: indented before any root line", i+1)
		}
		if err := trees[len(trees)-1].add(ind/3, name); err != nil {
			return nil, fmt.Errorf("line %d: %w", i+1, err)
		}
	}
	if len(trees) != 2 {
		return nil, fmt.Errorf("want 2 unindented root lines (locations, then products), found %d", len(trees))
	}
	m := &Menu{Locations: Tree{Children: trees[0].roots}, Products: Tree{Children: trees[1].roots}}
	return m, m.check()
}

func parseCounterMenu(b []byte) (*Menu, error) {
	var f struct {
		Menus []struct {
			Data  string `json:"data"`
			Depth int    `json:"depth"`
		} `json:"menus"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("menu JSON: %w", err)
	}
	if len(f.Menus) != 2 {
		return nil, fmt.Errorf(`"menus" must hold 2 menus (locations, products), it has %d`, len(f.Menus))
	}
	var ts [2]Tree
	for k, mn := range f.Menus {
		bl := &builder{}
		recs := strings.Split(mn.Data, "=")
		if len(recs) > 1 && recs[len(recs)-1] == "" {
			// Menu files of that format end every record with the
			// separator, the last one included: the empty record this
			// leaves is not a record.
			recs = recs[:len(recs)-1]
		}
		for j, rec := range recs {
			first, last := strings.Index(rec, ";"), strings.LastIndex(rec, ";")
			if first < 0 || last == first {
				return nil, fmt.Errorf("menu %d record %d %q is not depth;name;flag", k, j, rec)
			}
			var lvl int
			if _, err := fmt.Sscanf(rec[:first], "%d", &lvl); err != nil {
				return nil, fmt.Errorf("menu %d record %d: bad depth %q", k, j, rec[:first])
			}
			if lvl == 0 {
				continue // the root: not part of any code
			}
			if err := bl.add(lvl, rec[first+1:last]); err != nil {
				return nil, fmt.Errorf("menu %d record %d: %w", k, j, err)
			}
		}
		ts[k] = Tree{Depth: mn.Depth, Children: bl.roots}
	}
	m := &Menu{Locations: ts[0], Products: ts[1]}
	return m, m.check()
}
