package textfmt

import "testing"

func TestWrap(t *testing.T) {
	tests := []struct {
		name, first, rest, text string
		width                   int
		want                    string
	}{
		{name: "fits", text: "a b c", width: 10, want: "a b c\n"},
		{name: "breaks", first: "> ", rest: "  ", text: "one two three four", width: 10, want: "> one two\n  three\n  four\n"},
		{name: "long word alone", text: "abcdefghijkl x", width: 5, want: "abcdefghijkl\nx\n"},
		{name: "empty", first: "- ", text: "", width: 5, want: "- \n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Wrap(tt.first, tt.rest, tt.text, tt.width); got != tt.want {
				t.Errorf("Wrap = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 18227: "17.8 KiB", 2 << 20: "2.0 MiB", 3 << 30: "3.0 GiB"} {
		if got := Bytes(n); got != want {
			t.Errorf("Bytes(%d) = %q, want %q", n, got, want)
		}
	}
}
