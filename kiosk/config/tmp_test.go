package config

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

func TestTmpBig(t *testing.T) {
	spec, _ := os.ReadFile("testdata/spec-example.toml")
	docs := map[string]string{
		"quotes":  "a = \"\"\"" + strings.Repeat("\"\"x", 300000) + "\"\"\"\n",
		"keys":    strings.Repeat("[[door]]\nid = \"a\"\nrelay = { chip = \"c\", line = 1 }\n", 20000),
		"array":   "a = [" + strings.Repeat("1,", 400000) + "]\n",
		"nested":  "a = " + strings.Repeat("[", 5000) + strings.Repeat("]", 5000) + "\n",
		"dotted":  "a" + strings.Repeat(".a", 200000) + " = 1\n",
	}
	for name, d := range docs {
		start := time.Now()
		_, err := Parse([]byte(d), "big")
		s := ""
		if err != nil {
			s = err.Error()
			if len(s) > 100 {
				s = s[:100]
			}
		}
		fmt.Printf("%s: %d bytes %v %s\n", name, len(d), time.Since(start), s)
		start = time.Now()
		keyLines([]byte(d))
		fmt.Printf("   scan %v\n", time.Since(start))
	}
	start := time.Now()
	for i := 0; i < 1000; i++ {
		Parse(spec, "x")
	}
	fmt.Printf("spec example: %v per parse\n", time.Since(start)/1000)
}
