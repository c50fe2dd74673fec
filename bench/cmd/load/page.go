package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
)

// The lines between which the page holds this tool's section. The report
// tool (make bench-report) writes them and keeps what is between them.
const (
	beginMarker = "<!-- bench-load:begin -->"
	endMarker   = "<!-- bench-load:end -->"
)

// replaceSection returns page with what lies between the marker lines
// replaced by section. Everything else, the marker lines included, is kept
// byte for byte. Each marker must be a line of its own, once, begin before
// end.
func replaceSection(page []byte, section string) ([]byte, error) {
	begin, err := markerLine(page, beginMarker)
	if err != nil {
		return nil, err
	}
	end, err := markerLine(page, endMarker)
	if err != nil {
		return nil, err
	}
	if end < begin {
		return nil, fmt.Errorf("the line %s comes after %s", beginMarker, endMarker)
	}
	// Keep the begin line and its line ending, whatever it is.
	afterBegin := begin + len(beginMarker)
	if afterBegin < len(page) && page[afterBegin] == '\r' {
		afterBegin++
	}
	afterBegin++ // the '\n', which markerLine checked is there

	var out bytes.Buffer
	out.Write(page[:afterBegin])
	out.WriteString(section)
	if section != "" && section[len(section)-1] != '\n' {
		out.WriteByte('\n')
	}
	out.Write(page[end:])
	return out.Bytes(), nil
}

// markerLine returns the offset of the one line of page that is marker
// (a line ending \n or \r\n; the end marker may end the file).
func markerLine(page []byte, marker string) (int, error) {
	found := -1
	for off := 0; off < len(page); {
		line := page[off:]
		if i := bytes.IndexByte(line, '\n'); i >= 0 {
			line = line[:i+1]
		}
		trimmed := bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
		if string(trimmed) == marker {
			if found >= 0 {
				return 0, fmt.Errorf("the line %s is there twice", marker)
			}
			if marker == beginMarker && !bytes.HasSuffix(line, []byte("\n")) {
				return 0, fmt.Errorf("the line %s ends the file, with no %s after it", marker, endMarker)
			}
			found = off
		}
		off += len(line)
	}
	if found < 0 {
		return 0, fmt.Errorf("no line %s", marker)
	}
	return found, nil
}

// updatePage replaces the load section of the page at path and writes it
// back atomically: a temporary file in the same folder, renamed over the
// page, so a reader sees the old page or the new one, never half of one.
func updatePage(path, section string) error {
	page, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("%w: run make bench-report first, it writes the page", err)
	}
	updated, err := replaceSection(page, section)
	if err != nil {
		return fmt.Errorf("%s: %w: run make bench-report first, it writes the page with the markers %s and %s", path, err, beginMarker, endMarker)
	}
	info, err := os.Stat(path)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after the rename, there is nothing to remove
	if _, err := tmp.Write(updated); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(info.Mode().Perm()); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
