package images

import (
	"net/url"
	"strings"
	"testing"
)

const (
	vecDigest = "671772238154af7fce237c8a217d2cd2"
	vecName   = "aB3+x-9Qz"
)

func TestParseTarget(t *testing.T) {
	ok := "/" + vecDigest + "/" + vecName
	tests := []struct {
		name string
		path string
		want kind // kindNone: must be refused
	}{
		{"jpg", ok + ".jpg", kindJPEG},
		{"jpeg", ok + ".jpeg", kindJPEG},
		{"png", ok + ".png", kindPNG},
		{"webp", ok + ".webp", kindWebP},
		{"escaped plus", "/" + vecDigest + "/aB3%2Bx-9Qz.jpg", kindJPEG},
		{"escaped letters", "/" + vecDigest + "/%61B3+x-9Qz.%6Apg", kindJPEG},

		{"empty", "", kindNone},
		{"root", "/", kindNone},
		{"no leading slash", vecDigest + "/" + vecName + ".jpg", kindNone},
		{"double leading slash", "/" + ok + ".jpg", kindNone},
		{"double middle slash", "/" + vecDigest + "//" + vecName + ".jpg", kindNone},
		{"trailing slash", ok + ".jpg/", kindNone},
		{"extra segment", ok + "/x.jpg", kindNone},
		{"dotdot", "/../../etc/passwd", kindNone},
		{"dotdot digest", "/../" + vecName + ".jpg", kindNone},
		{"dotdot name", "/" + vecDigest + "/../" + vecName + ".jpg", kindNone},
		{"escaped dotdot", "/" + vecDigest + "/%2e%2e%2f%2e%2e.jpg", kindNone},
		{"encoded slash", "/" + vecDigest + "%2F" + vecName + ".jpg", kindNone},
		{"encoded slash in name", "/" + vecDigest + "/aB3%2Fx-9Qz.jpg", kindNone},
		{"encoded backslash", "/" + vecDigest + "/aB3%5Cx-9Qz.jpg", kindNone},
		{"backslash", "/" + vecDigest + "/aB3\\x-9Qz.jpg", kindNone},
		{"escaped digest", "/%36" + vecDigest[1:] + "/" + vecName + ".jpg", kindNone},
		{"NUL", "/" + vecDigest + "/aB3\x00x-9Qz.jpg", kindNone},
		{"escaped NUL", "/" + vecDigest + "/aB3%00x-9Qz.jpg", kindNone},
		{"NUL before ext", ok + "\x00.jpg", kindNone},
		{"bad escape", "/" + vecDigest + "/aB3%zzx-9Qz.jpg", kindNone},
		{"lone percent", "/" + vecDigest + "/aB3%x-9Qz.jpg", kindNone},
		{"absolute in name", "/" + vecDigest + "//etc/passwd", kindNone},
		{"uppercase digest", "/" + strings.ToUpper(vecDigest) + "/" + vecName + ".jpg", kindNone},
		{"short digest", "/" + vecDigest[1:] + "/" + vecName + ".jpg", kindNone},
		{"long digest", "/" + vecDigest + "0/" + vecName + ".jpg", kindNone},
		{"missing digest", "/" + vecName + ".jpg", kindNone},
		{"empty digest", "//" + vecName + ".jpg", kindNone},
		{"short name", "/" + vecDigest + "/aB3+x-9Q.jpg", kindNone},
		{"long name", "/" + vecDigest + "/aB3+x-9Qzz.jpg", kindNone},
		{"name with dot", "/" + vecDigest + "/aB3.x-9Qz.jpg", kindNone},
		{"name with space", "/" + vecDigest + "/aB3 x-9Qz.jpg", kindNone},
		{"name with underscore", "/" + vecDigest + "/aB3_x-9Qz.jpg", kindNone},
		{"no ext", ok, kindNone},
		{"empty ext", ok + ".", kindNone},
		{"double ext", ok + ".jpg.png", kindNone},
		{"uppercase ext", ok + ".JPG", kindNone},
		{"gif", ok + ".gif", kindNone},
		{"svg", ok + ".svg", kindNone},
		{"query in path", ok + ".jpg?x", kindNone},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseTarget(tc.path)
			if tc.want == kindNone {
				if err == nil {
					t.Fatalf("parseTarget(%q) = %+v, want refusal", tc.path, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseTarget(%q): %v", tc.path, err)
			}
			if got.kind != tc.want || got.digest != vecDigest || got.name != vecName {
				t.Fatalf("parseTarget(%q) = %+v", tc.path, got)
			}
		})
	}
}

// FuzzParseTarget checks that whatever the parser accepts is exactly the
// canonical shape, and maps to a store file that stays inside the root.
// Seeds live in testdata/fuzz/FuzzParseTarget; run with
// go test -run '^$' -fuzz FuzzParseTarget ./images
func FuzzParseTarget(f *testing.F) {
	f.Add("/" + vecDigest + "/" + vecName + ".jpg")
	f.Add("/" + vecDigest + "/aB3%2Bx-9Qz.webp")
	f.Add("/" + vecDigest + "%2F" + vecName + ".png")
	f.Add("/../../etc/passwd")
	f.Fuzz(func(t *testing.T, p string) {
		tg, err := parseTarget(p)
		if err != nil {
			return
		}
		if !isDigest(tg.digest) || len(tg.name) != NameLen || !isName(tg.name) || kindOfExt(tg.ext) == kindNone || kindOfExt(tg.ext) != tg.kind {
			t.Fatalf("accepted %q as %+v", p, tg)
		}
		if strings.Count(p, "/") != 2 || strings.ContainsAny(p, "\x00\\") || strings.Contains(p, "..") {
			t.Fatalf("accepted %q", p)
		}
		dec, err := url.PathUnescape(p)
		if err != nil || dec != "/"+tg.digest+"/"+tg.name+"."+tg.ext {
			t.Fatalf("accepted %q, which decodes to %q, as %+v", p, dec, tg)
		}
		dir, file, err := (&DirStore{}).file(tg.digest)
		if err != nil || strings.Contains(file, "..") || strings.HasPrefix(file, "/") || !strings.HasPrefix(file, dir+"/") {
			t.Fatalf("store file for %q is %q (%v)", p, file, err)
		}
	})
}
