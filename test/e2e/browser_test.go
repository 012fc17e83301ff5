package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// renderedPage is what headless Chromium shows of gitopsd's status page: the
// text of each table cell as rendered (innerText: hidden text left out), and
// the colour the alert cells are painted in.
type renderedPage struct {
	Title      string     `json:"title"`
	Revision   string     `json:"revision"`
	LastSync   string     `json:"lastSync"`
	Workloads  [][]string `json:"workloads"`
	Claims     [][]string `json:"claims"`
	Alerts     [][]string `json:"alerts"`
	AlertColor string     `json:"alertColor"`
}

// readPageJS reads the first sync section of the status page.
const readPageJS = `(() => {
  const rows = sel => {
    const table = document.querySelector(sel);
    if (!table || table.tagName !== 'TABLE') return [];
    return Array.from(table.rows).slice(1).map(tr => Array.from(tr.cells).map(td => td.innerText.trim()));
  };
  const text = id => { const e = document.getElementById(id); return e ? e.innerText.trim() : ''; };
  const alert = document.querySelector('#alerts tr.alert td.bad');
  return {
    title: document.title,
    revision: text('revision'),
    lastSync: text('last-sync'),
    workloads: rows('#workloads'),
    claims: rows('#claims'),
    alerts: rows('#alerts'),
    alertColor: alert ? getComputedStyle(alert).color : '',
  };
})()`

// chromium is the path of Debian's chromium (`make browser` installs it), or
// of $CHROMIUM.
func chromium(t *testing.T) string {
	t.Helper()
	for _, p := range []string{os.Getenv("CHROMIUM"), "/usr/bin/chromium", "chromium"} {
		if p == "" {
			continue
		}
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	t.Fatal("no chromium for the status page test: run `make browser` (Debian's chromium package) or set CHROMIUM")
	return ""
}

// inBrowser starts headless Chromium for the test and returns a context for
// chromedp actions in one tab.
func inBrowser(t *testing.T) context.Context {
	t.Helper()
	opts := append(slices.Clone(chromedp.DefaultExecAllocatorOptions[:]),
		chromedp.ExecPath(chromium(t)),
		chromedp.NoSandbox, // the tests run as root
		chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()),
		// This machine's network is closed: no background calls home.
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.WindowSize(1280, 1024),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(t.Context(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	// Start the browser now, so that a missing library fails here, clearly.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// checkPageInBrowser loads url in the browser of ctx until what it renders
// passes check, or fails the test after timeout. Each rendering is saved as
// a PNG under $E2E_ARTIFACTS, when set.
func checkPageInBrowser(t *testing.T, ctx context.Context, url string, timeout time.Duration, check func(renderedPage) error) {
	t.Helper()
	eventually(t, timeout, "status page in Chromium", func(context.Context) error {
		tctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		if err := chromedp.Do(tctx, chromedp.Navigate(url), chromedp.WaitVisible(chromedp.CSS("h1"))); err != nil {
			return fmt.Errorf("load %s: %w", url, err)
		}
		page, err := chromedp.Run(tctx, chromedp.Evaluate[renderedPage](readPageJS))
		if err != nil {
			return fmt.Errorf("read %s: %w", url, err)
		}
		if dir := os.Getenv("E2E_ARTIFACTS"); dir != "" {
			// Saved at every attempt, so a failing page is there to see.
			shot, err := chromedp.Run(tctx, chromedp.FullScreenshot(100))
			if err != nil {
				return fmt.Errorf("screenshot %s: %w", url, err)
			}
			name := filepath.Join(dir, strings.ReplaceAll(t.Name(), "/", "_")+".png")
			if err := os.WriteFile(name, shot, 0o644); err != nil {
				t.Logf("save screenshot: %v", err)
			}
		}
		return check(page)
	})
}

// row finds the row whose first cell is first.
func row(rows [][]string, first string) []string {
	for _, r := range rows {
		if len(r) > 0 && r[0] == first {
			return r
		}
	}
	return nil
}
