package wsgirouter

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// opensIn watches dir with inotify, and returns a function that reports
// the names in dir opened since the last call, the folder itself as ".".
// The kernel queues an event as the open happens, so the events of an
// open that has returned are there to read.
func opensIn(t *testing.T, dir string) (opened func() []string) {
	t.Helper()
	fd, err := syscall.InotifyInit1(syscall.IN_NONBLOCK | syscall.IN_CLOEXEC)
	require.NoError(t, err)
	t.Cleanup(func() { syscall.Close(fd) })
	_, err = syscall.InotifyAddWatch(fd, dir, syscall.IN_OPEN)
	require.NoError(t, err)
	return func() []string {
		var names []string
		buf := make([]byte, 64<<10)
		for {
			n, err := syscall.Read(fd, buf)
			if errors.Is(err, syscall.EAGAIN) {
				return names
			}
			require.NoError(t, err)
			for off := 0; off < n; {
				ev := (*syscall.InotifyEvent)(unsafe.Pointer(&buf[off]))
				name := buf[off+syscall.SizeofInotifyEvent : off+syscall.SizeofInotifyEvent+int(ev.Len)]
				name = bytes.TrimRight(name, "\x00")
				if len(name) == 0 {
					name = []byte(".")
				}
				names = append(names, string(name))
				off += syscall.SizeofInotifyEvent + int(ev.Len)
			}
		}
	}
}

// TestWhatIsNotARegularFileIsNeverOpened asks for a FIFO, and for a
// folder, and watches the web folder with inotify: neither is opened.
// Opening is the danger (a FIFO's open waits for a writer; a device's
// open may act on the device), so they are refused by what Stat says,
// before any open: by RootFS's Open itself, and by the application, for
// a folder given as any fs.FS.
func TestWhatIsNotARegularFileIsNeverOpened(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "ok.txt"), []byte("ok"), 0o644))
	fifo := fifoIn(t, dir, "fifo")
	require.NoError(t, os.Mkdir(filepath.Join(dir, "sub"), 0o755))
	root, err := os.OpenRoot(dir)
	require.NoError(t, err)
	t.Cleanup(func() { root.Close() })
	opened := opensIn(t, dir)
	unblock := func() { unblockFIFO(fifo) }

	files := RootFS(root)
	for _, name := range []string{"fifo", "sub"} {
		returnsSoon(t, "RootFS Open "+name, 5*time.Second, func() {
			f, err := files.Open(name)
			if f != nil {
				f.Close()
			}
			assert.ErrorIs(t, err, errNotRegular, name)
		}, unblock)
	}
	assert.Empty(t, opened(), "RootFS opened what it refuses")

	for fsName, files := range map[string]fs.FS{"RootFS": RootFS(root), "os.DirFS": os.DirFS(dir)} {
		app := NewApp(Service{Files: files})
		for _, path := range []string{"/fifo", "/sub"} {
			returnsSoon(t, fsName+" GET "+path, 5*time.Second, func() {
				assert.Equal(t, 404, callWSGI(t, app, "GET", path, nil).status)
			}, unblock)
		}
		assert.Empty(t, opened(), "the application opened what it refuses, through %s", fsName)
		// The watch sees an open when there is one.
		assert.Equal(t, 200, callWSGI(t, app, "GET", "/ok.txt", nil).status)
		assert.Contains(t, opened(), "ok.txt", "through %s", fsName)
	}
}
