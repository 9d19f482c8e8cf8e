package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path"
	"strconv"
	"strings"
)

// selfCostByPackage reads a callgrind output file (format: valgrind's "Callgrind Format
// Specification") and sums the self cost of its functions — the instructions executed in the
// function itself, not in its callees — by Go package. It expects one event (Ir) and line positions,
// callgrind's defaults.
//
// The package comes from the symbol name; assembly functions local to their file (p256MulInternal)
// have none, so theirs comes from the directory of their source file (with -trimpath, the package
// path).
func selfCostByPackage(r io.Reader) (map[string]int64, error) {
	names := map[string]string{} // "(id)" → function name; fn= and cfn= share this namespace
	files := map[string]string{} // "(id)" → file name; fl=, fi= and fe= share this namespace
	costs := map[string]int64{}
	current, file := "", ""
	afterCalls := false // the cost line after calls= is the call's inclusive cost: not self cost
	scanner := bufio.NewScanner(r)
	scanner.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for scanner.Scan() {
		line := scanner.Text()
		switch {
		case strings.HasPrefix(line, "fl="):
			file = compressedName(files, line[len("fl="):])
		case strings.HasPrefix(line, "fi="), strings.HasPrefix(line, "fe="), strings.HasPrefix(line, "cfi="), strings.HasPrefix(line, "cfl="):
			_, spec, _ := strings.Cut(line, "=")
			compressedName(files, spec)
		case strings.HasPrefix(line, "fn="):
			current = goPackage(compressedName(names, line[len("fn="):]), file)
		case strings.HasPrefix(line, "cfn="):
			compressedName(names, line[len("cfn="):])
		case strings.HasPrefix(line, "calls="):
			afterCalls = true
		case line != "" && strings.ContainsRune("0123456789+-*", rune(line[0])):
			if afterCalls {
				afterCalls = false
				continue
			}
			fields := strings.Fields(line)
			if len(fields) < 2 {
				continue // a position without cost
			}
			ir, err := strconv.ParseInt(fields[1], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("callgrind cost line %q: %w", line, err)
			}
			costs[current] += ir
		}
	}
	return costs, scanner.Err()
}

// compressedName resolves callgrind's name compression: "(12) name" defines id 12, "(12)" refers to it.
func compressedName(names map[string]string, spec string) string {
	id, name, hasName := strings.Cut(spec, " ")
	if !strings.HasPrefix(id, "(") {
		return spec // not compressed
	}
	if hasName {
		names[id] = name
		return name
	}
	return names[id]
}

// goPackage returns the package path of a Go symbol name, e.g. "crypto/tls" for
// "crypto/tls.(*Conn).Handshake". A name without a package takes the directory of its file.
func goPackage(symbol, file string) string {
	if strings.HasPrefix(symbol, "0x") {
		return "(no symbol)"
	}
	slash := strings.LastIndex(symbol, "/") + 1
	if dot := strings.Index(symbol[slash:], "."); dot > 0 {
		return symbol[:slash+dot]
	}
	if dir := path.Dir(file); file != "" && file != "???" && dir != "." {
		return dir
	}
	return symbol
}

// packageCosts reads callgrind output files and returns each file's self cost by package.
func packageCosts(paths ...string) ([]map[string]int64, error) {
	var all []map[string]int64
	for _, path := range paths {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		costs, err := selfCostByPackage(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		all = append(all, costs)
	}
	return all, nil
}
