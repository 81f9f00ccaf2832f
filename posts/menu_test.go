package posts

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const indented = `# locations first, then products
Locations
   Germany
      Bavaria
         Munich
         Nuremberg
      Berlin
   Brazil
      Rio de Janeiro
         Teresópolis

Products
   Cars
      Volkswagen
         Golf
            Golf GTI
   Bikes
`

func TestParseMenuFormatsAgree(t *testing.T) {
	counter := `{"menus":[
	 {"data":"0;Locations;0=1;Germany;0=2;Bavaria;0=3;Munich;0=3;Nuremberg;0=2;Berlin;0=1;Brazil;0=2;Rio de Janeiro;0=3;Teresópolis;0","depth":3,"version":1},
	 {"data":"0;Products;0=1;Cars;0=2;Volkswagen;0=3;Golf;0=4;Golf GTI;0=1;Bikes;0","depth":3,"version":1}]}`
	fromText, err := ParseMenu([]byte(indented))
	if err != nil {
		t.Fatal(err)
	}
	fromCounter, err := ParseMenu([]byte(counter))
	if err != nil {
		t.Fatal(err)
	}
	js, _ := json.Marshal(fromCounter)
	fromJSON, err := ParseMenu(js)
	if err != nil {
		t.Fatal(err)
	}
	fromCounter.Locations.Depth, fromCounter.Products.Depth = 0, 0
	fromJSON.Locations.Depth, fromJSON.Products.Depth = 0, 0
	a, _ := json.Marshal(fromText)
	b, _ := json.Marshal(fromCounter)
	c, _ := json.Marshal(fromJSON)
	if string(a) != string(b) || string(b) != string(c) {
		t.Fatalf("formats disagree:\ntext    %s\ncounter %s\njson    %s", a, b, c)
	}
	want := `{"locations":{"depth":0,"children":[{"name":"Germany","children":[{"name":"Bavaria","children":[{"name":"Munich"},{"name":"Nuremberg"}]},{"name":"Berlin"}]},{"name":"Brazil","children":[{"name":"Rio de Janeiro","children":[{"name":"Teresópolis"}]}]}]},` +
		`"products":{"depth":0,"children":[{"name":"Cars","children":[{"name":"Volkswagen","children":[{"name":"Golf","children":[{"name":"Golf GTI"}]}]}]},{"name":"Bikes"}]}}`
	if string(a) != want {
		t.Fatalf("menu JSON\n got %s\nwant %s", a, want)
	}
}

func TestParseMenuErrors(t *testing.T) {
	for name, in := range map[string]string{
		"one tree":             "Locations\n   A\n",
		"three trees":          "L\n   A\nP\n   B\nX\n   C\n",
		"bad indent":           "L\n  A\nP\n   B\n",
		"jump":                 "L\n      A\nP\n   B\n",
		"tab":                  "L\n\tA\nP\n   B\n",
		"empty tree":           "L\nP\n   B\n",
		"json unknown field":   `{"locations":{"depth":3,"children":[{"name":"a"}]},"products":{"children":[{"name":"b"}]},"x":1}`,
		"json empty name":      `{"locations":{"children":[{"name":""}]},"products":{"children":[{"name":"b"}]}}`,
		"json bad depth":       `{"locations":{"depth":5,"children":[{"name":"a"}]},"products":{"children":[{"name":"b"}]}}`,
		"counter one menu":     `{"menus":[{"data":"0;R;0=1;A;0","depth":3}]}`,
		"counter bad record":   `{"menus":[{"data":"0;R;0=1A","depth":3},{"data":"0;R;0=1;A;0","depth":3}]}`,
		"counter empty record": `{"menus":[{"data":"0;R;0==1;A;0=","depth":3},{"data":"0;R;0=1;A;0","depth":3}]}`,
		"counter depth jump":   `{"menus":[{"data":"0;R;0=2;A;0","depth":3},{"data":"0;R;0=1;A;0","depth":3}]}`,
		"invalid json":         `{"locations":`,
	} {
		if _, err := ParseMenu([]byte(in)); err == nil {
			t.Errorf("%s: parsed, want an error", name)
		}
	}
}

func TestMenuValidCodes(t *testing.T) {
	m, err := ParseMenu([]byte(indented))
	if err != nil {
		t.Fatal(err)
	}
	m.Locations.Depth, m.Products.Depth = 3, 3
	tests := []struct {
		tree *Tree
		code []uint64
		want bool
	}{
		{&m.Locations, []uint64{0, 0, 0}, true},  // Munich
		{&m.Locations, []uint64{0, 0, 1}, true},  // Nuremberg
		{&m.Locations, []uint64{0, 0, 2}, false}, // no third city
		{&m.Locations, []uint64{0, 0}, false},    // Bavaria: above the depth, not a leaf
		{&m.Locations, []uint64{0, 1}, true},     // Berlin: a leaf above the depth
		{&m.Locations, []uint64{2}, false},       // no third country
		{&m.Locations, []uint64{0, 0, 0, 0}, false},
		{&m.Products, []uint64{0, 0, 0}, true},    // Golf
		{&m.Products, []uint64{0, 0, 0, 0}, true}, // Golf GTI: deeper than the depth
		{&m.Products, []uint64{1}, true},          // Bikes: a leaf
		{&m.Products, nil, false},
	}
	for _, tc := range tests {
		if got := tc.tree.valid(tc.code); got != tc.want {
			t.Errorf("valid(%v) = %v, want %v", tc.code, got, tc.want)
		}
	}
}

func TestLoadMenuAndDemo(t *testing.T) {
	p := filepath.Join(t.TempDir(), "menu.txt")
	os.WriteFile(p, []byte(indented), 0o600)
	if _, err := LoadMenu(p); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadMenu(p + ".missing"); err == nil {
		t.Fatal("a missing file loaded")
	}
	d := DemoMenu()
	if d.Locations.Depth != 3 || d.Products.Depth != 3 || len(d.Locations.Children) < 3 || len(d.Products.Children) < 3 {
		t.Fatalf("demo menu: %+v", d)
	}
	if !d.Locations.valid([]uint64{0, 0, 0}) || !strings.Contains(string(demoMenu), "Munich") {
		t.Fatal("demo menu does not start with Germany/Bavaria/Munich")
	}
}

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// The GET /api/menu body of the demo menu is what the web app is built
// against: any change to it shows up here (refresh with -update).
func TestDemoMenuAPIGolden(t *testing.T) {
	got, err := marshalMenu(DemoMenu())
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "demo_menu_api.golden.json")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if string(got) != string(want) {
		t.Fatalf("GET /api/menu changed:\n got %s\nwant %s", got, want)
	}
}

// originalCounterMenu writes a menu the way the original's menu tool does
// (docs/menus.md, format 3): a root, one node below it, four below that
// and eight leaves under each, every record followed by the separator "=",
// the last one included.
func originalCounterMenu() string {
	var b strings.Builder
	b.WriteString("0;Root;0=1;Country;0=")
	for i := range 4 {
		fmt.Fprintf(&b, "2;State %d;0=", i)
		for j := range 8 {
			fmt.Fprintf(&b, "3;City %d.%d;0=", i, j)
		}
	}
	data, _ := json.Marshal(b.String())
	return `{"menus":[{"data":` + string(data) + `,"depth":3,"version":3},{"data":` + string(data) + `,"depth":3,"version":3}]}`
}

// The original's "counter" menu, with its trailing separator, loads (it
// stopped the node with 'record 38 "" is not depth;name;flag').
func TestParseMenuOriginalCounterFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "menu.json")
	if err := os.WriteFile(path, []byte(originalCounterMenu()), 0o600); err != nil {
		t.Fatal(err)
	}
	m, err := LoadMenu(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range []Tree{m.Locations, m.Products} {
		if tr.Depth != 3 || len(tr.Children) != 1 || len(tr.Children[0].Children) != 4 {
			t.Fatalf("tree %+v: want depth 3, one node with four below", tr)
		}
		for _, st := range tr.Children[0].Children {
			if len(st.Children) != 8 {
				t.Fatalf("%s has %d leaves, want 8", st.Name, len(st.Children))
			}
		}
		if !tr.valid([]uint64{0, 3, 7}) || tr.valid([]uint64{0, 3, 8}) {
			t.Fatal("codes of the leaves are not what the tree says")
		}
	}
}

// Anything can be listed (issue 15): every node of the demo menu above the
// leaves ends with an "Other" child, so a helmet need not pose as a
// motorbike model, and the codes of the entries before it keep their
// indexes.
func TestDemoMenuHasOtherEverywhere(t *testing.T) {
	d := DemoMenu()
	var walk func(path string, ns []*Node, level, depth int)
	walk = func(path string, ns []*Node, level, depth int) {
		if len(ns) == 0 || ns[len(ns)-1].Name != "Other" {
			t.Errorf("%s: the last child is not Other", path)
		}
		for _, n := range ns {
			if level < depth {
				walk(path+"/"+n.Name, n.Children, level+1, depth)
			}
		}
	}
	walk("locations", d.Locations.Children, 1, d.Locations.Depth)
	walk("products", d.Products.Children, 1, d.Products.Depth)
	// Existing codes are stable: Cars/BMW/X5 is still [0,1,1], and the
	// helmet's code is [1,2,0] (Motorcycles/Other/Other).
	if !d.Products.valid([]uint64{0, 1, 1}) || !d.Products.valid([]uint64{1, 2, 0}) || !d.Locations.valid([]uint64{3, 0, 0}) {
		t.Fatal("demo menu codes moved")
	}
}
